// The live care queue (/alerts, first page). A stream of server-sent events (/alerts/events)
// says "your queue changed"; the page then reads itself again and swaps the queue in, so
// what it shows always comes from the page's own route and rights. A new or newly critical
// (심각) alert plays a tone and shows a browser notification unless the care manager turned
// them off (remembered in this browser); the page title counts the alerts nobody has
// acknowledged. The stream sends a ping every 20 s: silent for 45 s, refused, or not ready
// 10 s after opening, the page reads itself every 30 s and opens a new stream meanwhile.
// No build step and no inline script (the pages' CSP allows scripts from this site only).
(function () {
  "use strict";
  var queue = document.getElementById("queue");
  if (!queue || queue.getAttribute("data-live") !== "1" || !window.fetch) return;

  var POLL_MS = 30000;
  var SILENT_MS = 45000; // two pings missed
  var READY_MS = 10000;
  var REOPEN_MS = 5000;
  var state = { mode: "starting", refreshes: 0, tones: 0, notified: 0, streams: 0 };
  window.anbuQueue = state; // read by the browser tests
  var stream = null;
  var heardAt = 0;
  var openedAt = 0;
  var pollTimer = null;
  var busy = false;
  var again = false;
  var audio = null;
  var critical = criticalIds(document);

  function criticalIds(root) {
    var ids = {};
    var rows = root.querySelectorAll("tr[data-alert][data-severity='critical']");
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-state") !== "resolved") ids[rows[i].getAttribute("data-alert")] = true;
    }
    return ids;
  }

  function show(id, visible) {
    var el = document.getElementById(id);
    if (el) el.hidden = !visible;
  }

  function alarmOn() {
    try { return window.localStorage.getItem("anbu.alarm") !== "off"; } catch (e) { return true; }
  }

  function setAlarm(on) {
    try { window.localStorage.setItem("anbu.alarm", on ? "on" : "off"); } catch (e) { /* private mode */ }
    showControls();
  }

  function showControls() {
    var toggle = document.getElementById("alarm-toggle");
    if (!toggle) return;
    var box = document.querySelector(".live-controls");
    if (box) box.hidden = false;
    var on = alarmOn();
    toggle.setAttribute("data-on", on ? "true" : "false");
    toggle.textContent = toggle.getAttribute(on ? "data-on-text" : "data-off-text");
    toggle.onclick = function () { wakeAudio(); setAlarm(!alarmOn()); };
    var allow = document.getElementById("notify-allow");
    var permission = "Notification" in window ? Notification.permission : "unsupported";
    if (allow) {
      allow.hidden = permission !== "default";
      allow.onclick = function () {
        wakeAudio();
        Notification.requestPermission().then(showControls, showControls);
      };
    }
    show("notify-blocked", on && permission === "denied");
    show("notify-unsupported", on && (permission === "unsupported" || state.notifyBroken === true));
    show("sound-hint", on && !(audio && audio.state === "running"));
  }

  function showMode(mode) {
    state.mode = mode;
    var status = document.getElementById("live-status");
    if (!status) return;
    var text = status.getAttribute(mode === "live" ? "data-live-text" : "data-polling-text");
    if (text && mode !== "starting") status.textContent = text;
  }

  // Browsers start sound only after the person has used the page: the first click anywhere
  // readies it for the alerts that come later (a hint says so until then).
  function wakeAudio() {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    if (!audio) audio = new Context();
    if (audio.state === "suspended") audio.resume().then(showControls, showControls);
    showControls();
  }
  document.addEventListener("click", wakeAudio);

  function tone() {
    if (!audio || audio.state !== "running") return false;
    var now = audio.currentTime;
    [0, 0.35].forEach(function (at) {
      var osc = audio.createOscillator();
      var gain = audio.createGain();
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.0001, now + at);
      gain.gain.exponentialRampToValueAtTime(0.3, now + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + at + 0.3);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + at);
      osc.stop(now + at + 0.32);
    });
    return true;
  }

  // newly critical alerts stay outlined until the page is loaded again, whatever swaps follow
  var outlined = {};

  function outline() {
    Object.keys(outlined).forEach(function (id) {
      var row = document.querySelector("tr[data-alert='" + id + "']");
      if (row) row.classList.add("fresh");
    });
  }

  function announce(fresh) {
    var news = document.getElementById("live-news");
    for (var i = 0; i < fresh.length; i++) outlined[fresh[i]] = true;
    outline();
    if (!news) return;
    var text = news.getAttribute("data-text").replace("{n}", String(fresh.length));
    news.textContent = text + " " + news.getAttribute("data-marked");
    if (!alarmOn()) return;
    if (tone()) state.tones += 1;
    if ("Notification" in window && Notification.permission === "granted") {
      try {
        // no name, home or reason: a notification may show on a locked screen
        var note = new Notification(news.getAttribute("data-title"), {
          body: text, tag: "anbu-critical", renotify: true,
        });
        note.onclick = function () { window.focus(); note.close(); };
        state.notified += 1;
      } catch (e) {
        state.notifyBroken = true; // Android's Chrome: only a service worker may show one
        showControls();
      }
    }
  }

  function swapIn(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var fresh = doc.getElementById("queue");
    if (!fresh) return;
    var now = criticalIds(doc);
    var added = Object.keys(now).filter(function (id) { return !critical[id]; });
    critical = now;
    queue.innerHTML = fresh.innerHTML;
    queue.setAttribute("data-waiting", fresh.getAttribute("data-waiting") || "0");
    document.title = doc.title;
    showMode(state.mode);
    outline();
    if (added.length) announce(added);
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    window.fetch(window.location.pathname + window.location.search, {
      credentials: "same-origin", cache: "no-store", headers: { "Accept": "text/html" },
    }).then(function (res) {
      if (res.redirected && new URL(res.url).pathname === "/login") {
        window.location.assign(res.url); // the session ended: log in again
        return null;
      }
      return res.ok ? res.text() : null;
    }).then(function (html) {
      if (html) { state.refreshes += 1; swapIn(html); }
    }).catch(function () { /* offline: the next event or poll tries again */ })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  function startPolling() {
    showMode("polling");
    if (!pollTimer) pollTimer = window.setInterval(refresh, POLL_MS);
  }

  function stopPolling() {
    if (pollTimer) { window.clearInterval(pollTimer); pollTimer = null; }
  }

  function drop() {
    if (stream) { stream.close(); stream = null; }
    startPolling();
    window.setTimeout(connect, REOPEN_MS);
  }

  function connect() {
    if (stream) return;
    if (!window.EventSource) { startPolling(); return; }
    state.streams += 1;
    stream = new EventSource("/alerts/events");
    openedAt = Date.now();
    heardAt = 0;
    stream.addEventListener("ready", function () {
      heardAt = Date.now();
      stopPolling();
      showMode("live");
      // what changed before the stream (or while it was away); spread over two seconds so
      // pages reopened together do not all read at once
      window.setTimeout(refresh, Math.random() * 2000);
    });
    stream.addEventListener("ping", function () { heardAt = Date.now(); });
    stream.addEventListener("queue", function () { heardAt = Date.now(); refresh(); });
    stream.onerror = function () {
      // refused (the login, a server error, too many streams): poll, and open a new one
      // later; a stream that ended is opened again by the browser itself
      if (stream && stream.readyState === EventSource.CLOSED) drop();
    };
  }

  // a stream silent past two pings (a proxy holding it, a laptop waking from sleep), or not
  // ready soon after opening, is given up for polling and a new one
  window.setInterval(function () {
    if (!stream) return;
    var now = Date.now();
    if (heardAt ? now - heardAt > SILENT_MS : now - openedAt > READY_MS) drop();
  }, 5000);

  showControls();
  connect();
})();
