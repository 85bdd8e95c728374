"""What care managers read, Korean first and English beside it; times in their time zone."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from alerts.course import COURSE_NOT_ALLOWED, ENDED_OUTCOME
from alerts.models import RESOLUTION_OUTCOMES, STATE_LABELS
from alerts.policy import OUTCOME_KO
from alerts.routing import route_for
from calls.dialer import CANCELED
from calls.outcomes import LOST_STATUS
from core.domain import AlertState, CallOutcome, Severity
from registry import (
    CAP_MAX_H,
    CAP_MIN_H,
    PASSWORD_MIN_LENGTH,
    QUIET_MAX_H,
    STATUS_MAX_DAYS,
    InvalidChange,
)
from registry.care_notes import NOTE_MAX_CHARS

LANGUAGES = ("ko", "en")
DEFAULT_LANGUAGE = "ko"

TEXTS: dict[str, tuple[str, str]] = {
    "app": ("안부 돌봄 알림", "anbu care alerts"),
    "login": ("로그인", "Log in"),
    "logout": ("로그아웃", "Log out"),
    "username": ("아이디", "Username"),
    "password": ("비밀번호", "Password"),
    "login_failed": (
        "아이디 또는 비밀번호가 올바르지 않습니다.",
        "The username or password is not correct.",
    ),
    "login_locked": (
        "로그인에 여러 번 실패하여 보안을 위해 로그인이 잠시 제한되었습니다. 몇 분 후 다시 "
        "시도해 주세요. 비밀번호가 기억나지 않으면 시스템 관리자에게 재설정을 요청해 주세요. "
        "알림 문자와 전화는 그동안에도 계속 받으실 수 있습니다.",
        "After several failed logins, logging in is paused for a few minutes for security. "
        "Please try again later; if you forgot your password, ask your system administrator to "
        "reset it. Alert texts and calls keep reaching you meanwhile.",
    ),
    "password_locked": (
        "현재 비밀번호를 여러 번 잘못 입력하여 잠시 변경이 제한되었습니다. 몇 분 후 다시 "
        "시도해 주세요.",
        "The current password was wrong several times; changes are paused for a few minutes.",
    ),
    "totp_code": ("인증 코드 (6자리)", "Authentication code (6 digits)"),
    "totp_prompt": (
        "인증 앱에 표시된 6자리 코드를 입력해 주세요.",
        "Enter the 6-digit code your authenticator app shows.",
    ),
    "code_failed": (
        "인증 코드가 올바르지 않습니다. 앱에 표시된 최신 코드를 입력해 주세요. 휴대전화를 "
        "분실했다면 시스템 관리자에게 2단계 인증 해제를 요청해 주세요.",
        "The code is not correct. Enter the newest code your app shows; if you lost your "
        "phone, ask your system administrator to turn off two-step verification.",
    ),
    "verify": ("확인", "Verify"),
    "account": ("내 계정", "My account"),
    "enrolment": ("대상자 등록", "Enrolment"),
    "change_password": ("비밀번호 변경", "Change password"),
    "current_password": ("현재 비밀번호", "Current password"),
    "new_password": ("새 비밀번호", "New password"),
    "confirm_password": ("새 비밀번호 확인", "Confirm new password"),
    "password_help": (
        f"{PASSWORD_MIN_LENGTH}자 이상으로 정해 주세요. 흔한 비밀번호, 같은 글자의 반복, "
        "아이디가 들어간 비밀번호는 쓸 수 없습니다. 변경하면 다른 기기(PC·휴대전화)에서는 "
        "모두 로그아웃됩니다.",
        f"At least {PASSWORD_MIN_LENGTH} characters; common passwords, repeated characters and "
        "ones containing the username are refused. Changing it logs you out on every other "
        "device and ends API tokens.",
    ),
    "done_password_changed": (
        "비밀번호가 변경되었습니다. 다른 기기에서는 모두 로그아웃되었습니다.",
        "Your password was changed; logins on other devices have ended.",
    ),
    "totp": ("2단계 인증 (OTP)", "Two-step verification (TOTP)"),
    "totp_on": (
        "사용 중입니다. 로그인할 때마다 인증 코드가 필요합니다.",
        "On: every login asks for a code.",
    ),
    "totp_off": ("사용하지 않습니다.", "Off."),
    "totp_start": ("인증 앱 등록", "Set up an authenticator app"),
    "totp_enrol_help": (
        "인증 앱(Google OTP, Microsoft Authenticator 등)에 아래 설정 키를 등록한 뒤, 앱에 "
        "표시된 6자리 코드를 입력해 주세요.",
        "Add the key below to an authenticator app (Google Authenticator, ...), then enter "
        "the 6-digit code it shows.",
    ),
    "totp_secret": ("설정 키", "Setup key"),
    "totp_remove": ("2단계 인증 해제", "Turn off two-step verification"),
    "totp_roles_only": (
        "2단계 인증은 구 통합돌봄 담당자와 구 시스템 관리자 계정만 사용할 수 있습니다.",
        "Two-step verification is for district supervisors and admins.",
    ),
    "done_totp_enabled": ("2단계 인증이 설정되었습니다.", "Two-step verification is on."),
    "done_totp_removed": ("2단계 인증이 해제되었습니다.", "Two-step verification is off."),
    "reach_heading": ("기본 정보·연락처", "About them and how to reach them"),
    "born": ("출생연도", "Born"),
    "born_value": ("{year}년생 (만 {younger}~{age}세)", "{year} (aged {younger}–{age})"),
    "mobile": ("휴대전화", "Mobile"),
    "landline": ("집전화", "Landline"),
    "home_address": ("주소", "Address"),
    "show_access_notes": (
        "출입 메모 보기 (열람 기록이 남습니다)",
        "Show access notes (the read is recorded)",
    ),
    "status_until": ("{until}까지", "until {until}"),
    "next_checkin": ("다음 정기 안부전화", "Next routine check-in call"),
    "no_checkin_planned": ("예정된 정기 안부전화가 없습니다.", "None planned."),
    "checkin_paused": (
        "현재 상태({status})에서는 정기 안부전화를 걸지 않습니다.",
        "No routine calls while the status is {status}.",
    ),
    "contacts_heading": ("비상 연락처 (연락 순서대로)", "Emergency contacts (in calling order)"),
    "may_call": ("연락 동의", "agreed to be called"),
    "may_not_call": ("연락 미동의", "not agreed to be called"),
    "no_contacts": ("등록된 비상 연락처가 없습니다.", "No emergency contacts on file."),
    "recent_calls": ("최근 안부전화", "Recent calls"),
    "resident_said": ("대상자 말씀", "What they said"),
    "resident_alerts": ("알림 내역", "Alerts"),
    "no_resident_alerts": ("알림 내역이 없습니다.", "No alerts."),
    # the care queue's homes that cannot be observed (dashboards.unobserved)
    "unobserved_homes": ("활동 확인 불가 가구", "Homes whose activity cannot be seen"),
    "unobserved_help": (
        "센서 신호가 끊겨 대상자의 활동을 확인할 수 없습니다. 안부전화 결과를 확인하고, 연락이 "
        "닿지 않으면 방문해 주세요. 기기 수리는 설치·점검 기사가 맡습니다.",
        "The sensors' signal is lost, so the resident's activity cannot be seen. Check the "
        "check-in call's outcome and visit if nobody answers; the technician repairs devices.",
    ),
    "unobserved_why_gateway_offline": ("게이트웨이 연결 끊김", "gateway offline"),
    "unobserved_why_sensors_silent": ("모든 센서 신호 없음", "every sensor silent"),
    "unobserved_why_site_outage": (
        "지역 단위 연결 장애(정전·통신 등)",
        "area-wide outage (power, network or similar)",
    ),
    "unobserved_sensors_silent_note": (
        "게이트웨이는 연결되어 있으나 모든 센서가 조용합니다. 기기 고장일 수도, 대상자가 움직이지 "
        "못하는 상황일 수도 있습니다. 안부전화가 닿지 않으면 방문해 주세요.",
        "The gateway is connected but every sensor is quiet: a device fault, or a resident who "
        "cannot move. Visit if the check-in call does not reach them.",
    ),
    "unobserved_since": ("마지막 활동 신호", "Last activity data"),
    "unobserved_devices": ("신호 없는 기기", "Not reporting"),
    "unobserved_technician": ("설치·점검 기사", "Technician"),
    "unobserved_technician_has": ("기사 점검 목록에 올라감", "On the technician's list since"),
    "unobserved_technician_not_yet": (
        "기사 점검 목록에 아직 없음",
        "Not yet on the technician's list",
    ),
    "unobserved_technician_none": (
        "기사 점검 대상 아님 (기기 이상 신호 없음)",
        "Not on the technician's list (no device fault reported)",
    ),
    "unobserved_call": ("안부전화", "Check-in call"),
    "unobserved_no_call": (
        "안부전화 예정 없음 — 직접 연락해 주세요",
        "No check-in call under way: contact the resident yourself",
    ),
    "unobserved_more": ("외 {n}가구", "and {n} more homes"),
    "unobserved_count": ("{n}가구", "{n} homes"),
    "not_recorded": ("미등록", "not on file"),
    # webhook subscriptions (dashboards.webhooks_api): why one was refused
    "webhook_url_invalid": (
        "주소(URL) 형식이 올바르지 않습니다. https://로 시작하는 주소를 넣어 주세요.",
        "Not a usable URL: give an https:// address (no user name or password in it).",
    ),
    "webhook_https_required": (
        "보안 연결(https) 주소만 등록할 수 있습니다.",
        "Only https addresses can be subscribed.",
    ),
    "webhook_address_refused": (
        "내부망·사설·루프백 주소로는 보낼 수 없습니다. 외부에서 접속할 수 있는 주소를 넣어 주세요.",
        "Private, internal and loopback addresses are refused: give a public address.",
    ),
    "webhook_address_unresolved": (
        "주소의 호스트 이름을 찾을 수 없습니다.",
        "The URL's host name does not resolve.",
    ),
    "webhook_dongs": (
        "구독할 행정동은 관리하는 구의 행정동이어야 합니다.",
        "The dongs must be dongs of your district.",
    ),
    "webhook_not_found": ("웹훅 구독을 찾을 수 없습니다.", "No such webhook subscription."),
    "service_account_dongs": (
        "서비스 계정이 다룰 행정동을 관할 구의 행정동 중에서 하나 이상 골라 주세요.",
        "Choose one or more dongs of your district for the account.",
    ),
    "service_account_scopes": (
        "권한 범위(scopes)는 alerts:read, alerts:write, residents:read, residents:write, "
        "events:read 중 하나 이상이어야 합니다.",
        "Scopes must be one or more of: alerts:read, alerts:write, residents:read, "
        "residents:write, events:read.",
    ),
    "service_account_not_found": (
        "서비스 계정을 찾을 수 없습니다.",
        "No such service account.",
    ),
    # the resident card's week grid: outings, nights and today
    "week_legend": ("표시 안내", "Key"),
    "week_legend_activity": ("활동 횟수 (진할수록 많음)", "Activity count (darker = more)"),
    "week_legend_none": ("센서 기록 없음", "No reading"),
    "week_legend_later": ("아직 지나지 않은 시간", "Still to come"),
    "week_legend_out": (
        "외출 추정 (현관문이 닫힌 뒤 집 안 움직임 없이 {minutes}분 이상)",
        "Probably out (entrance door closed, no one moving inside, {minutes} min or more)",
    ),
    "week_legend_night": ("새벽 (0시~6시)", "Small hours (0:00-5:59)"),
    "week_legend_night_active": ("새벽 활동", "Activity in the small hours"),
    "week_night": ("새벽", "small hours"),
    "week_today": ("오늘", "today"),
    "week_out_cell": ("외출 추정 {minutes}분", "probably out {minutes} min"),
    "week_no_reading": ("기록 없음", "no reading"),
    "week_out_help": (
        "외출 추정은 현관문이 닫히기 직전 집 안에서 움직임이 있었고, 닫힌 뒤 다음에 문이 움직일 "
        "때까지 집 안 센서(동작·문 열림)에 아무 신호가 없었으며, 문이 움직인 직후 다시 움직임이 "
        "있었던 시간입니다. 센서로 추정한 것이며 집에 계셨을 수도 있습니다. 연락이 닿지 않으면 "
        "이 표시만으로 판단하지 마세요. 현관문 센서가 하나가 아닌 집, 동작 센서가 없는 집, 기기 "
        "이상이나 감지 내역이 있던 때, 아직 돌아오지 않은 외출은 표시하지 않습니다.",
        "Probably out: someone moved inside just before the entrance door closed, no sensor "
        "inside (motion, a contact opening) said anything until the door next moved, and someone "
        "moved inside right after. It is a guess from sensors: the resident may have been home. "
        "If you cannot reach them, do not rely on it. Never shown for a home without exactly one "
        "entrance door sensor or without a motion sensor, around a device fault or a finding, or "
        "for an outing not yet back.",
    ),
    "care_notes": ("돌봄 메모", "Care notes"),
    "care_notes_help": (
        "방문·전화 후 남기는 돌봄 메모입니다. 이 행정동 담당자만 보고 쓸 수 있으며, 볼 때마다 열람 "
        "기록이 남습니다. 저장한 메모는 수정·삭제할 수 없습니다. 잘못 적었으면 '이 메모 정정'을 "
        "눌러 새 메모로 바로잡아 주세요(원래 메모는 줄을 그어 남겨 둡니다). 방문·통화 날짜가 저장 "
        "시각과 다르면 본문에 적어 주세요.",
        "Care notes after a visit or a call, read and written by the dong's care managers only; "
        "each read is recorded. A saved note is never changed or deleted: to fix one, use "
        "'Correct this note' (a new note; the original stays, struck through). If the visit or "
        "call was on another day than the note is saved, say so in the note.",
    ),
    "care_notes_elsewhere": (
        "돌봄 메모는 대상자가 속한 행정동의 담당자만 볼 수 있습니다.",
        "Care notes are shown to the care managers of the resident's own dong only.",
    ),
    "note_body": (
        f"메모 내용 (최대 {NOTE_MAX_CHARS:,}자)",
        f"Note (up to {NOTE_MAX_CHARS:,} characters)",
    ),
    "note_kind": ("구분", "Kind"),
    "note_kind_pick": ("선택해 주세요", "Choose"),
    "note_written": ("작성", "written"),
    "note_add": ("메모 저장", "Save note"),
    "note_correct": ("이 메모 정정", "Correct this note"),
    "note_correct_body": ("정정한 내용 (메모 전체)", "Corrected note (whole text)"),
    "note_correct_hint": (
        "정정 사유를 첫 줄에 적어 주세요.",
        "Give the reason for the correction on the first line.",
    ),
    "note_correct_save": ("정정 메모 저장", "Save the correction"),
    "note_corrected": ("정정됨", "corrected"),
    "note_corrected_by": ("정정 메모 #{id}", "see #{id}"),
    "note_corrects": ("#{id} 메모를 정정", "corrects #{id}"),
    "note_erased": (
        "보존 기간이 지나 내용이 삭제되었습니다.",
        "Removed after the retention period.",
    ),
    "note_unopened": (
        "이 메모를 불러오지 못했습니다(내용은 지워지지 않고 보관되어 있습니다). 메모 번호를 시스템 "
        "운영 담당자에게 알려 주세요.",
        "This note could not be opened (it is kept, not lost); tell the system operator its "
        "number.",
    ),
    "no_care_notes": ("아직 남긴 메모가 없습니다.", "No notes yet."),
    "older_notes": ("이전 메모 더 보기", "Older notes"),
    "newest_notes": ("← 최근 메모로", "← Newest notes"),
    "notes_ended": (
        "서비스가 종료되어 새 메모를 남길 수 없습니다. 이전 메모는 계속 볼 수 있습니다.",
        "Service ended: new notes cannot be added. The notes written stay readable.",
    ),
    "note_not_found": (
        "정정하려는 메모를 찾을 수 없습니다. 화면을 새로고침한 뒤 다시 해 주세요.",
        "The note to correct was not found; reload the page and try again.",
    ),
    "invalid_note_empty": (
        "메모 내용을 입력해 주세요. 공백이나 줄바꿈만으로는 저장되지 않습니다.",
        "Write the note first: spaces or line breaks alone are not saved.",
    ),
    "invalid_note_too_long": (
        f"메모는 {NOTE_MAX_CHARS:,}자까지 저장할 수 있습니다. 내용을 줄이거나 메모 두 개로 나누어 "
        "저장해 주세요.",
        f"A note holds at most {NOTE_MAX_CHARS:,} characters; shorten it or save it as two notes.",
    ),
    "invalid_note_kind": ("방문·전화·기타 중에서 골라 주세요.", "Choose visit, call or other."),
    "invalid_note_unreadable": (
        "저장할 수 없는 글자가 들어 있습니다. 한글(HWP) 문서 등에서 붙여 넣은 부분이 있으면 지우고 "
        "직접 입력해 주세요.",
        "The note holds characters that cannot be saved; retype any part pasted from another "
        "document.",
    ),
    "invalid_note_token": (
        "이 요청 번호는 다른 대상자의 메모에 이미 쓰였습니다. 화면을 새로고침한 뒤 다시 저장해 주세요.",
        "This request key was used for another resident's note; reload the page and save again.",
    ),
    "invalid_note_corrected": (
        "이 메모는 이미 정정되었습니다(다른 담당자가 먼저 정정했을 수 있습니다). 작성하신 내용은 "
        "가장 최근 정정 메모의 정정 칸에 옮겨 두었으니, 확인한 뒤 저장해 주세요.",
        "This note was corrected already, perhaps by a colleague. Your text is kept in the "
        "correction form of the latest correction: check it and save there.",
    ),
    "review_paged": (
        "대상자 {n}명 중 {shown}명을 이 페이지에 보여 줍니다 (검토할 분과 활동이 가장 많이 준 분 먼저).",
        "{shown} of {n} residents on this page (those for review and the largest drops first).",
    ),
    "open_alerts": ("진행 중인 알림", "Open alerts"),
    "no_alerts": ("진행 중인 알림이 없습니다.", "There are no open alerts."),
    "severity": ("단계", "Severity"),
    "state": ("상태", "State"),
    "home": ("가구", "Home"),
    "resident": ("대상자", "Resident"),
    "reason": ("사유", "Reason"),
    "opened": ("발생 시각", "Opened"),
    "calls": ("안부전화", "Calls"),
    "alert": ("알림", "Alert"),
    "timeline": ("처리 기록", "Timeline"),
    "time": ("시각", "Time"),
    "actor": ("처리자", "By"),
    "change": ("변경", "Change"),
    "call_status": ("통화 상태", "Call status"),
    "call_outcome": ("응답", "Outcome"),
    "no_calls": ("걸린 전화가 없습니다.", "No calls were placed."),
    "notifications": ("담당자 알림 발송", "Care manager notifications"),
    "acknowledge": ("확인", "Acknowledge"),
    "resolve": ("종결", "Resolve"),
    "outcome": ("종결 사유", "Outcome"),
    "note": ("메모 (선택)", "Note (optional)"),
    "back": ("목록으로", "Back to list"),
    "refresh_note": ("30초마다 새로고침됩니다.", "Refreshes every 30 seconds."),
    "live_note": (
        "새 알림과 바뀐 내용이 새로고침 없이 바로 반영됩니다.",
        "New alerts and changes appear without reloading.",
    ),
    "live_polling": (
        "실시간 연결이 끊겨 30초마다 목록을 다시 불러옵니다. 연결되면 다시 바로 반영됩니다.",
        "Live updates interrupted: the list reloads every 30 seconds until they are back.",
    ),
    "waiting_count": ("담당자 미확인 {n}건", "{n} not yet acknowledged"),
    "waiting_title": ("미확인 {n}", "{n} unacknowledged"),
    "alarm_state_on": (
        "심각 단계 알림음·팝업: 켜짐 (끄기)",
        "Sound and pop-ups for critical alerts: on (turn off)",
    ),
    "alarm_state_off": (
        "심각 단계 알림음·팝업: 꺼짐 (켜기)",
        "Sound and pop-ups for critical alerts: off (turn on)",
    ),
    "notify_allow": (
        "화면 알림 받기 (브라우저 창에서 '허용' 선택)",
        "Get desktop notifications (choose 'Allow')",
    ),
    "sound_needs_click": (
        "알림음은 이 화면을 한 번 누른 뒤부터 울립니다.",
        "Sound starts after you click anywhere on this page once.",
    ),
    "notify_blocked": (
        "브라우저에서 알림이 차단되어 팝업이 뜨지 않습니다. 주소창의 자물쇠 아이콘에서 '알림'을 "
        "허용해 주세요.",
        "This browser blocks notifications, so no pop-ups appear: allow them from the lock icon "
        "in the address bar.",
    ),
    "notify_unsupported": (
        "이 기기의 브라우저는 팝업 알림을 띄울 수 없어 소리로만 알립니다.",
        "This device's browser cannot show pop-ups here: alerts ring only.",
    ),
    "alarm_limits": (
        "소리와 팝업은 이 화면이 열려 있을 때만 작동하며, 켜고 끈 설정은 이 브라우저에만 "
        "적용됩니다. 휴대폰 화면이 꺼지면 울리지 않으니 문자 알림도 함께 확인해 주세요.",
        "Sound and pop-ups work only while this page is open, and the setting applies to this "
        "browser only; they do not replace the SMS alerts.",
    ),
    "new_critical": (
        "심각 단계 알림 {n}건이 새로 생겼습니다. 바로 확인해 주세요.",
        "{n} alert(s) now critical. Please check now.",
    ),
    "new_critical_marked": ("목록에서 테두리로 표시했습니다.", "They are outlined in the list."),
    "new_critical_title": ("[안부] 심각 단계 알림", "anbu: critical alert"),
    "alert_changed": (
        "처리되지 않았습니다. 이 화면을 연 뒤 알림 내용이 바뀌었습니다(현재 단계: {severity}, "
        "상태: {state}). 알림을 다시 열어 바뀐 내용을 확인한 뒤 다시 처리해 주세요.",
        "Not done: this alert changed after you opened it (now {severity}, {state}). Open it "
        "again, check what changed, then act.",
    ),
    "open_alert_again": ("알림 다시 열기", "Open the alert again"),
    "unavailable": (
        "지금은 처리할 수 없습니다. 잠시 뒤 다시 해 주세요.",
        "Not available right now; try again shortly.",
    ),
    "idempotency_key_invalid": (
        "요청 번호(Idempotency-Key) 값이 올바르지 않아 처리되지 않았습니다. 공백·한글 없이 "
        "영문·숫자·기호 1~255자로 된 값 하나만 보내 주세요.",
        "Not carried out: the Idempotency-Key is not valid. Send exactly one, of 1 to 255 "
        "visible ASCII characters (no spaces).",
    ),
    "idempotency_key_reused": (
        "처리되지 않았습니다. 이 요청 번호(Idempotency-Key)는 내용이 다른 요청에 이미 쓰였습니다. "
        "같은 요청을 다시 보낼 때는 내용을 바꾸지 말고, 새 요청에는 새 요청 번호를 써 주세요.",
        "Not carried out: this Idempotency-Key was already used for a different request. Resend "
        "a request unchanged under the same key; give a new request a new key.",
    ),
    "idempotency_in_progress": (
        "이 요청 번호(Idempotency-Key)로 먼저 보낸 요청을 아직 처리하고 있습니다. 잠시 뒤 같은 "
        "요청 번호로 다시 보내 주세요. 두 번 처리되지는 않습니다.",
        "The request first sent with this Idempotency-Key is still being carried out. Send it "
        "again shortly with the same key; it will not be carried out twice.",
    ),
    "idempotency_answer_withheld": (
        "이 요청은 이미 처리되었습니다. 결과에 한 번만 보여 주는 값(토큰·비밀번호·서명용 비밀값)이 "
        "들어 있어 다시 보낼 수 없습니다. 만들어진 항목을 목록에서 확인하고, 그 값을 받지 못했다면 "
        "항목을 폐기한 뒤 새로 만들어 주세요(게이트웨이는 '비밀번호 재발급').",
        "This request was already carried out. Its answer held a secret shown only once (a "
        "token, password or signing secret), so it cannot be sent again. Find what was made in "
        "its list; if the secret never reached you, revoke or delete it and make a new one (for "
        "a gateway, issue a new password).",
    ),
    "idempotency_grant_changed": (
        "이 요청은 이미 처리되었지만, 그 뒤 권한(역할·담당 동)이 바뀌어 그때의 결과를 다시 보여 줄 수 "
        "없습니다. 두 번 처리되지는 않았습니다. 화면을 새로고침하거나 해당 내용을 다시 조회해 주세요.",
        "This request was carried out already, but your role or dongs changed since, so its "
        "answer is not shown again. It was not carried out twice: reload, or read the item "
        "again.",
    ),
    "idempotency_answer_lost": (
        "이 요청은 처리되었지만, 서버 문제로 결과를 전하지 못했습니다. 두 번 처리되지 않도록 다시 "
        "실행하지 않았습니다. 화면을 새로고침하거나 해당 내용을 다시 조회해 결과를 확인해 주세요.",
        "This request was carried out, but a server fault kept its answer from reaching you. It "
        "was not carried out again, so nothing is done twice: reload, or read the item again, to "
        "see the result.",
    ),
    "paged_refresh_note": (
        "이 페이지는 자동으로 새로고침되지 않습니다. 새로 생기거나 단계가 오른 알림은 첫 페이지에 보입니다.",
        "This page does not refresh itself; new and raised alerts show on the first page.",
    ),
    "next_page": ("다음 페이지 →", "Next page →"),
    "first_page": ("← 첫 페이지로", "← First page"),
    "pages": ("페이지 이동", "Page navigation"),
    "total_count": ("전체 {n}건", "{n} in all"),
    "paged_note": (
        "심각 단계부터 {n}건씩 보여 줍니다. 나머지는 아래 '다음 페이지'에 있습니다.",
        "Most severe first, {n} per page; the rest follow 'Next page' below.",
    ),
    "dong": ("담당 행정동", "Dong"),
    "not_found": ("알림을 찾을 수 없습니다.", "Alert not found."),
    "illegal": (
        "지금 상태에서는 할 수 없는 처리입니다. 화면을 새로고침해 주세요.",
        "That action is not possible in the alert's current state. Please reload.",
    ),
    "illegal_last": (
        "현재 상태: {state} ({who}, {when}).",
        "Current state: {state} ({who}, {when}).",
    ),
    "illegal_reassign": (
        "이미 종결된 알림은 담당자를 바꿀 수 없습니다.",
        "A resolved alert's care manager cannot be changed.",
    ),
    "csrf": (
        "요청을 확인할 수 없습니다. 화면을 새로고침한 뒤 다시 시도해 주세요.",
        "The request could not be verified. Reload the page and try again.",
    ),
    "bad_outcome": ("알 수 없는 종결 사유입니다.", "Unknown outcome."),
    "no_actions": ("지금 할 수 있는 처리가 없습니다.", "No action is possible now."),
    "error": ("오류", "Error"),
    "system": ("시스템", "system"),
    "switch_language": ("English", "한국어"),
    "alerts": ("알림", "Alerts"),
    "residents": ("대상자 관리", "Residents"),
    "no_residents": ("등록된 대상자가 없습니다.", "No residents are registered."),
    "care_status": ("돌봄 상태", "Status"),
    "until": ("종료 예정", "Until"),
    "quiet_hours": ("방해 금지 시간", "Quiet hours"),
    "level_caps": (
        "활동 미감지 단계 상한 (관심/주의/심각)",
        "Inactivity caps (watch/warning/critical)",
    ),
    "set_status": ("상태 변경", "Change status"),
    "suppressing": ("활동 미감지 알림 중지 중", "inactivity alerts paused"),
    "expired": ("기간 지남: 활동 미감지 확인 중", "period over: inactivity watched"),
    "none": ("없음", "none"),
    "status_help": (
        f"부재·입원은 종료 예정 시각이 필요합니다 (최대 {STATUS_MAX_DAYS}일). "
        "그때까지 활동 미감지 알림이 중지되고, 지나면 저절로 다시 확인합니다. "
        "열려 있던 활동 미감지 알림은 종결되고 대기 중인 안부전화는 취소됩니다 "
        "(도움 요청은 그대로 남습니다).",
        f"Away and hospital need an end (at most {STATUS_MAX_DAYS} days ahead): inactivity "
        "alerts pause until then and resume by themselves afterwards. Open inactivity alerts "
        "are closed and their waiting check-in calls cancelled (help requests stay open).",
    ),
    "resident_not_found": ("대상자를 찾을 수 없습니다.", "Resident not found."),
    "forbidden": (
        "이 계정에는 이 화면을 사용할 권한이 없습니다.",
        "Your account does not have permission to use this page.",
    ),
    "data_key": (
        "암호화된 메모를 열거나 저장할 수 없습니다. 시스템 운영 담당자에게 데이터 키 설정 확인을 "
        "요청해 주세요.",
        "The encrypted notes cannot be opened or saved. Please ask your system operator to "
        "check the data key settings.",
    ),
    "reassign": ("담당자 변경", "Reassign"),
    "sites": ("설치 현장", "Sites"),
    "site": ("설치 현장", "Site"),
    "homes": ("가구", "Homes"),
    "device_findings": ("기기·현장 이상", "Device and site findings"),
    "address": ("설치 주소", "Install address"),
    "access_notes": ("출입 메모", "Access notes"),
    "gateways": ("게이트웨이", "Gateways"),
    "sensors": ("센서", "Sensors"),
    "room": ("방", "Room"),
    "online": ("연결됨", "online"),
    "offline": ("연결 끊김", "offline"),
    "never_connected": ("연결 기록 없음", "never connected"),
    "safety_devices": ("안전 기기 (응급호출기·감지기)", "Safety devices (buttons, detectors)"),
    "safety_help": (
        "평소에는 거의 쓰이지 않는 기기라 정기 신호(상태·배터리 보고)로만 정상 작동을 "
        "확인할 수 있습니다. 최근 24시간 안에 신호가 온 기기는 '연결됨'으로 표시됩니다.",
        "Rarely used, these are known to work only by their regular check-ins (state, battery): "
        "online means heard within 24 hours.",
    ),
    "device": ("기기", "Device"),
    "last_signal": ("마지막 신호", "Last check-in"),
    "battery": ("배터리", "Battery"),
    "silent_device": ("신호 없음 (점검 필요)", "silent (needs a check)"),
    "no_safety_devices": ("등록된 안전 기기가 없습니다.", "No safety device is registered."),
    "gateway_down": ("게이트웨이 끊김", "gateway offline"),
    "quiet_device": ("신호 뜸 (평소보다 오래 조용함)", "quiet longer than usual"),
    "activity_sensors": (
        "생활 감지 센서 (문·움직임·전기)",
        "Activity sensors (door, motion, power)",
    ),
    "no_activity_sensors": (
        "등록된 생활 감지 센서가 없습니다.",
        "No activity sensor is registered.",
    ),
    "offline_gateways": ("끊긴 게이트웨이", "Gateways offline"),
    "current_assignee": ("현재 담당자", "Assigned now"),
    "dong_shared": ("행정동 공동 담당", "the dong's care managers"),
    "jurisdiction": ("관할", "Area"),
    "whole_district": ("{district} 전체", "all of {district}"),
    "reassign_to": ("새 담당자", "New care manager"),
    "invalid_assignee_unknown": (
        "관할 구의 활동 중인 담당자가 아닙니다.",
        "No such active care manager in the district.",
    ),
    "invalid_assignee_not_in_dong": (
        "대상자가 속한 행정동의 담당자에게만 넘길 수 있습니다. 같은 행정동의 활동 중인 담당자를 "
        "골라 주세요.",
        "Only a care manager of the resident's own dong can take this; choose an active care "
        "manager of that dong.",
    ),
    # InvalidChange codes of alerts.course (a resident's transfer and end of service)
    "invalid_unknown_dong": (
        "관할 구에 없는 행정동입니다.",
        "No such dong in the district.",
    ),
    "invalid_same_dong": (
        "이미 해당 행정동의 대상자입니다.",
        "The resident already belongs to that dong.",
    ),
    "invalid_assignee_other_dong": (
        "선택한 담당자는 옮겨 갈 행정동의 담당자가 아닙니다.",
        "The care manager chosen is not a care manager of the dong the resident moves to.",
    ),
    "invalid_bad_end_reason": (
        "종료 사유는 전출, 요양시설 입소, 사망, 기타 중에서 골라 주세요.",
        "Choose the end reason: moved away, entered a care home, died or other.",
    ),
    "invalid_input": (
        "입력값을 읽을 수 없습니다. 형식을 확인해 주세요.",
        "The input could not be read; check its format.",
    ),
    # InvalidChange codes of registry (and the pages' own until_unreadable)
    "invalid_bad_status": (
        "상태는 관리 중(active), 부재(away), 입원(hospital) 중 하나여야 합니다.",
        "The status must be active, away or hospital.",
    ),
    "invalid_until_with_active": (
        "관리 중 상태에는 종료 예정 시각을 넣지 않습니다.",
        "An active resident has no end date.",
    ),
    "invalid_until_required": (
        "부재·입원은 종료 예정 시각이 필요합니다.",
        "Away and hospital need an end date.",
    ),
    "invalid_until_naive": (
        "종료 예정 시각에 시간대가 필요합니다.",
        "The end date needs a time zone.",
    ),
    "invalid_until_unreadable": (
        "종료 예정 시각을 읽을 수 없습니다.",
        "The end date could not be read.",
    ),
    "invalid_until_past": (
        "종료 예정 시각은 지금 이후여야 합니다.",
        "The end date must be in the future.",
    ),
    "invalid_until_too_far": (
        f"종료 예정 시각은 {STATUS_MAX_DAYS}일 이내여야 합니다.",
        f"The end date must be at most {STATUS_MAX_DAYS} days ahead.",
    ),
    "invalid_password_short": (
        f"비밀번호는 {PASSWORD_MIN_LENGTH}자 이상이어야 합니다.",
        f"A password needs at least {PASSWORD_MIN_LENGTH} characters.",
    ),
    "invalid_password_long": (
        "비밀번호는 128자 이하로 입력해 주세요.",
        "A password may have at most 128 characters.",
    ),
    "invalid_password_common": (
        "너무 흔하거나 추측하기 쉬운 비밀번호입니다. 다른 비밀번호를 골라 주세요.",
        "This password is too common or easy to guess; choose another.",
    ),
    "invalid_password_username": (
        "비밀번호에 아이디를 넣을 수 없습니다.",
        "A password may not contain the username.",
    ),
    "invalid_password_wrong": (
        "현재 비밀번호가 올바르지 않습니다.",
        "The current password is not correct.",
    ),
    "invalid_password_same": (
        "새 비밀번호가 현재 비밀번호와 같습니다.",
        "The new password must differ from the current one.",
    ),
    "invalid_password_mismatch": (
        "새 비밀번호와 비밀번호 확인이 일치하지 않습니다.",
        "The new passwords do not match.",
    ),
    "invalid_resident_ended": (
        "서비스가 종료된 대상자는 변경할 수 없습니다.",
        "This resident's service has ended; nothing can be changed.",
    ),
    "invalid_quiet_pair": (
        "방해 금지 시간은 시작과 끝을 함께 넣거나 둘 다 비워야 합니다.",
        "Quiet hours need both a start and an end, or neither.",
    ),
    "invalid_quiet_local": (
        "방해 금지 시간은 시간대 없이 현지 시각으로 넣어 주세요.",
        "Quiet hours are local times, without a time zone.",
    ),
    "invalid_quiet_empty": (
        "방해 금지 시간의 시작과 끝이 같을 수 없습니다.",
        "Quiet hours cannot start and end at the same time.",
    ),
    "invalid_quiet_too_long": (
        f"방해 금지 시간은 최대 {QUIET_MAX_H}시간입니다.",
        f"Quiet hours may last at most {QUIET_MAX_H} hours.",
    ),
    "invalid_cap_range": (
        f"각 상한은 {CAP_MIN_H:g}시간 이상 {CAP_MAX_H:g}시간 이하여야 합니다.",
        f"Each cap must be between {CAP_MIN_H:g} and {CAP_MAX_H:g} hours.",
    ),
    "invalid_caps_not_rising": (
        "상한은 관심 ≤ 주의 ≤ 심각 순서여야 합니다.",
        "Caps must rise: watch ≤ warning ≤ critical.",
    ),
    "week": ("최근 7일 생활 기록", "Last 7 days"),
    "week_help": (
        "시간마다 감지된 활동(움직임, 문, 가전 사용) 횟수입니다. 빗금 칸은 센서 기록이 없는 "
        "시간, 0은 기록은 있으나 활동이 없는 시간, 빈 칸은 아직 지나지 않은 시간입니다.",
        "Activity (motion, the door, appliances) each hour. A hatched hour had no reading at "
        "all; 0 means readings but no one; a plain one is still to come.",
    ),
    "day": ("날짜", "Day"),
    "week_findings": ("이 기간의 감지 내역", "Findings in this time"),
    "no_findings": ("감지 내역이 없습니다.", "No findings."),
    "activity": ("생활 기록", "Activity"),
    "kind": ("종류", "Kind"),
    "review": ("주간 검토", "Weekly review"),
    "requests": ("연계 요청", "Service requests"),
    "requests_help": (
        "정기 안부전화에서 대상자가 말한 필요한 도움입니다. 수락한 뒤 연계 기관에 전하고 "
        "종결해 주세요. 오래된 요청부터 보입니다.",
        "Needs residents stated on their routine check-in calls. Accept one, pass it to a "
        "provider and close it. Oldest first.",
    ),
    "no_requests": ("열린 연계 요청이 없습니다.", "No open service requests."),
    "request_words": ("대상자 말씀", "Resident's words"),
    "request_category": ("분류", "Category"),
    "request_state": ("상태", "State"),
    "request_received": ("접수 일시", "Received"),
    "request_accept": ("담당 지정", "Take it"),
    "request_link": ("기관 연계", "Link to provider"),
    "request_close": ("종결", "Close"),
    "request_provider": ("연계 기관", "Provider"),
    "request_note": ("메모", "Note"),
    "request_changed": (
        "다른 담당자가 먼저 처리했습니다. 목록을 새로 고쳐 확인해 주세요.",
        "Another care manager acted on it first. Reload the list to see it.",
    ),
    "week_talk": ("안부 대화", "Check-in talk"),
    "week_of": ("주 (월요일부터)", "Week (from Monday)"),
    "line_messages": ("돌봄콜 메시지", "Care line messages"),
    "line_message_words": ("말씀 내용", "What was said"),
    "line_message_untranscribed": (
        "받아쓰지 못했습니다. 녹음을 들어 주세요.",
        "Could not be written down: listen to the recording.",
    ),
    "line_message_listen": ("녹음 듣기", "Listen"),
    "conversation_trend": ("안부 대화 (최근 8주)", "Check-in conversations (last 8 weeks)"),
    "no_conversations": ("아직 안부 대화가 없습니다.", "No check-in conversations yet."),
    "monthly_report": ("월간 보고서", "Monthly report"),
    "review_help": (
        "최근 7일의 활동을 직전 4주 평균과 비교합니다. 생활 변화·야간 활동 감지는 전화를 걸지 않고 "
        "이 검토를 위해 기록됩니다.",
        "The last 7 days against the mean of the 4 weeks before. Routine changes and night "
        "activity ring nobody: they are raised for this review.",
    ),
    "this_week": ("이번 주 활동", "Activity this week"),
    "vs_usual": ("평소 대비", "vs usual"),
    "night_activity": ("새벽 활동 (0–6시)", "Small hours (0–6 h)"),
    "days_with_data": ("기록 있는 날", "Days with data"),
    "week_found": ("이번 주 감지", "Found this week"),
    "no_usual": ("기준 없음", "no usual yet"),
}

RESIDENT_STATUS_LABELS: dict[str, tuple[str, str]] = {
    "active": ("관리 중", "active"),
    "away": ("부재", "away"),
    "hospital": ("입원", "in hospital"),
    "ended": ("서비스 종료", "ended"),
}

ACTORS: dict[str, tuple[str, str]] = {
    "system": ("시스템", "system"),
    "resident": ("대상자 응답", "resident"),
    "care_manager": ("담당자", "care manager"),
}

# One name per role (dashboards.authz.Role), wherever a role is shown or named.
ROLE_LABELS: dict[str, tuple[str, str]] = {
    "manager": ("담당자(생활지원사·전담사회복지사)", "care manager"),
    "supervisor": ("구 통합돌봄 담당자", "district supervisor"),
    "admin": ("구 시스템 관리자", "district admin"),
    "technician": ("설치·점검 기사", "installer"),
    "service": ("연계 시스템", "connected system"),  # a service account: a city system
}

# Outcomes the system writes when it closes an alert itself; never offered in the resolve form.
SYSTEM_OUTCOMES: dict[str, tuple[str, str]] = {
    ENDED_OUTCOME: ("서비스 종료로 종결", "closed: service ended"),
}

# A refusal that says who may (by dashboards.authz.Action value); any other action: "forbidden".
FORBIDDEN_BY_ACTION: dict[str, tuple[str, str]] = {
    "residents.course": COURSE_NOT_ALLOWED,
    "residents.notes": (
        "돌봄 메모는 대상자가 속한 행정동의 담당자(생활지원사·전담사회복지사)만 보고 쓸 수 "
        "있습니다. 내용이 필요하면 담당자에게 요청해 주세요.",
        "Only the care managers of the resident's own dong read and write care notes; ask "
        "them if you need what they wrote.",
    ),
}

NOTE_KIND_LABELS: dict[str, tuple[str, str]] = {
    "visit": ("방문", "visit"),
    "call": ("전화", "call"),
    "other": ("기타", "other"),
}


def pick(lang: str, pair: tuple[str, str]) -> str:
    """The Korean or English half of a (ko, en) pair."""
    return pair[1] if lang == "en" else pair[0]


def text(lang: str, key: str) -> str:
    """A fixed sentence of the web pages in `lang`."""
    return pick(lang, TEXTS[key])


def illegal_text(lang: str, event: str) -> str:
    """Why an alert refused an event in its state: the event's own words, else the general."""
    key = f"illegal_{event}"
    return text(lang, key if key in TEXTS else "illegal")


def change_error(lang: str, error: InvalidChange) -> str:
    """Why the registry refused a change, in words (its English message for an unknown rule)."""
    key = f"invalid_{error.code}"
    return text(lang, key) if key in TEXTS else str(error)


def resident_status_label(lang: str, status: str) -> str:
    """관리 중 / 부재 / 입원 / 서비스 종료, or active / away / in hospital / ended."""
    return (
        pick(lang, RESIDENT_STATUS_LABELS[status]) if status in RESIDENT_STATUS_LABELS else status
    )


def hours_label(hours: float | None) -> str:
    """A cap in hours ('7.5h'), or '—' when there is none."""
    return "—" if hours is None else f"{hours:g}h"


def parse_language(value: str | None) -> str | None:
    """`value` when it names a supported language, else None."""
    return value if value in LANGUAGES else None


def severity_label(lang: str, severity: str) -> str:
    """관심/주의/심각, or watch/warning/critical."""
    level = Severity.parse(severity)
    return level.label if lang == "en" else level.korean


def state_label(lang: str, state: AlertState | str) -> str:
    return pick(lang, STATE_LABELS[AlertState(state)])


def outcome_label(lang: str, outcome: str | None) -> str:
    """A resolution outcome's words: a care manager's, or one the system closed with."""
    if outcome is None:
        return ""
    words = RESOLUTION_OUTCOMES.get(outcome) or SYSTEM_OUTCOMES.get(outcome)
    return pick(lang, words) if words else outcome


def note_kind_label(lang: str, kind: str) -> str:
    """방문 / 전화 / 기타, or visit / call / other."""
    return pick(lang, NOTE_KIND_LABELS[kind]) if kind in NOTE_KIND_LABELS else kind


def role_label(lang: str, role: str) -> str:
    """A role's one name (ROLE_LABELS); an unknown role as it is stored."""
    return pick(lang, ROLE_LABELS[role]) if role in ROLE_LABELS else role


def forbidden_text(lang: str, action: str) -> str:
    """Why a role was refused `action` (a dashboards.authz.Action): who may, where that is
    said, else the general words."""
    pair = FORBIDDEN_BY_ACTION.get(action)
    return pick(lang, pair) if pair else text(lang, "forbidden")


# Calls that ended without ringing anyone: their status says how, whatever the outcome holds
# (a cancelled call has none; a lost one is stored as failed so that it is never reassurance).
CALL_ENDED_UNRUNG: dict[str, tuple[str, str]] = {
    CANCELED: ("취소됨", "cancelled"),
    LOST_STATUS: ("연결 안 됨(유실)", "lost before dialling"),
}


# a call's status as the telephony provider reports it, in words (never the raw code)
CALL_STATUS: dict[str, tuple[str, str]] = {
    "queued": ("발신 대기", "queued"),
    "initiated": ("발신 중", "dialling"),
    "ringing": ("신호 가는 중", "ringing"),
    "in-progress": ("통화 중", "in progress"),
    "completed": ("통화 종료", "completed"),
    "busy": ("통화 중이라 연결 안 됨", "busy"),
    "no-answer": ("받지 않음", "no answer"),
    "failed": ("연결 실패", "failed"),
    "canceled": ("취소됨", "cancelled"),
}


def call_status_label(lang: str, status: str | None) -> str:
    """A call's status in words; a status no table knows is shown as '—', never raw."""
    if status in CALL_ENDED_UNRUNG:
        return pick(lang, CALL_ENDED_UNRUNG[status])
    pair = CALL_STATUS.get(status or "")
    return pick(lang, pair) if pair else "—"


def call_outcome_label(lang: str, outcome: str | None, status: str | None = None) -> str:
    """How a check-in call ended, in words, read from its outcome and status: cancelled and
    lost calls say so; '—' while it is still going."""
    if status in CALL_ENDED_UNRUNG:
        return pick(lang, CALL_ENDED_UNRUNG[status])
    if outcome is None:
        return "—"
    try:
        value = CallOutcome(outcome)
    except ValueError:
        return outcome
    return value.value.replace("_", " ") if lang == "en" else OUTCOME_KO[value]


def actor_label(lang: str, actor: str, services: Mapping[int, str] | None = None) -> str:
    """'care_manager:7' -> '담당자 #7', never a person's name; a service account's id (its name
    in `services`) -> '통합정보시스템(연계 시스템)': no person acted, and the reader must not think
    one did."""
    role, _, ident = actor.partition(":")
    if role == "care_manager" and services and ident.isdigit() and int(ident) in services:
        return f"{services[int(ident)]}({pick(lang, ROLE_LABELS['service'])})"
    words = pick(lang, ACTORS[role]) if role in ACTORS else role
    return f"{words} #{ident}" if ident else words


def local_time_formatter(timezone: str) -> Callable[[datetime | None], str]:
    """A formatter that shows stored UTC times in `timezone` (Asia/Seoul for people)."""
    zone = ZoneInfo(timezone)

    def local(moment: datetime | None) -> str:
        return "" if moment is None else moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    return local


def finding_kind_label(lang: str, kind: str) -> str:
    """A finding kind in the care manager's words (the alert route's label)."""
    route = route_for(kind)
    return pick(lang, (route.label_ko, route.label_en))


def change_label(change: float | None, lang: str) -> str:
    """+12 % / −40 %; the 'no usual yet' words when there is no usual week."""
    if change is None:
        return text(lang, "no_usual")
    return f"{change * 100:+.0f} %".replace("-", "−")
