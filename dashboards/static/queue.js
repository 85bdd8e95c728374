// The live care queue (/alerts, first page). A stream of server-sent events (/alerts/events)
// says "your queue changed"; the page then reads itself again and swaps the queue in, so
// what it shows always comes from the page's own route and rights. A new or newly critical
// (심각) alert plays a tone and shows a browser notification unless the care manager turned
// them off (remembered in this browser); the page title counts the alerts nobody has
// acknowledged. If the stream drops, the page reads itself every 30 s until it is back.
// No build step and no inline script (the pages' CSP allows scripts from this site only).
(function () {
  "use strict";
  var queue = document.getElementById("queue");
  if (!queue || queue.getAttribute("data-live") !== "1" || !window.fetch) return;

  var POLL_MS = 30000;
  var REOPEN_MS = 60000;
  var GRACE_MS = 10000;
  var readyAt = 0;
  var state = { mode: "starting", refreshes: 0, alarms: 0, notified: 0 };
  window.anbuQueue = state; // read by the browser tests
  var stream = null;
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

  function alarmOn() {
    try { return window.localStorage.getItem("anbu.alarm") !== "off"; } catch (e) { return true; }
  }

  function setAlarm(on) {
    try { window.localStorage.setItem("anbu.alarm", on ? "on" : "off"); } catch (e) { /* private mode */ }
    showControls();
  }

  function showControls() {
    var controls = document.querySelector(".live-controls");
    var toggle = document.getElementById("alarm-toggle");
    var allow = document.getElementById("notify-allow");
    if (!controls || !toggle) return;
    controls.hidden = false;
    var on = alarmOn();
    toggle.setAttribute("aria-pressed", on ? "true" : "false");
    toggle.textContent = toggle.getAttribute(on ? "data-on-text" : "data-off-text");
    toggle.onclick = function () { wakeAudio(); setAlarm(!alarmOn()); };
    if (allow) {
      var asking = "Notification" in window && Notification.permission === "default";
      allow.hidden = !asking;
      allow.onclick = function () {
        wakeAudio();
        Notification.requestPermission().then(showControls, showControls);
      };
    }
  }

  function showMode(mode) {
    state.mode = mode;
    var status = document.getElementById("live-status");
    if (!status) return;
    var text = status.getAttribute(mode === "live" ? "data-live-text" : "data-polling-text");
    if (text) status.textContent = text;
  }

  // Browsers start sound only after the person has used the page: the first click anywhere
  // (or on the buttons above) readies it for the alerts that come later.
  function wakeAudio() {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    if (!audio) audio = new Context();
    if (audio.state === "suspended") audio.resume();
  }
  document.addEventListener("click", wakeAudio, { once: true });

  function tone() {
    if (!audio || audio.state !== "running") return;
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
  }

  function announce(fresh) {
    var news = document.getElementById("live-news");
    var count = fresh.length;
    if (news) news.textContent = news.getAttribute("data-text").replace("{n}", String(count));
    for (var i = 0; i < count; i++) {
      var row = document.querySelector("tr[data-alert='" + fresh[i] + "']");
      if (row) row.classList.add("fresh");
    }
    if (!alarmOn()) return;
    state.alarms += 1;
    tone();
    if ("Notification" in window && Notification.permission === "granted" && news) {
      // no name, home or reason: a notification may show on a locked screen
      new Notification(news.getAttribute("data-title"), {
        body: news.textContent, tag: "anbu-critical", renotify: true,
      });
      state.notified += 1;
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
    showControls();
    showMode(state.mode);
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

  function connect() {
    if (!window.EventSource) { startPolling(); return; }
    stream = new EventSource("/alerts/events");
    stream.addEventListener("ready", function () {
      readyAt = Date.now();
      stopPolling();
      showMode("live");
      refresh(); // what changed before the stream (or while it was away)
    });
    stream.addEventListener("queue", refresh);
    stream.onerror = function () {
      var failedAt = Date.now();
      if (stream.readyState === EventSource.CLOSED) {
        // refused (a redirect to the login, a server error): poll, and try again later
        stream = null;
        startPolling();
        window.setTimeout(connect, REOPEN_MS);
        return;
      }
      // the browser opens it again by itself (the server ends each stream after a while):
      // poll only if it is not back soon
      window.setTimeout(function () {
        if (readyAt < failedAt) startPolling();
      }, GRACE_MS);
    };
  }

  showControls();
  connect();
})();
