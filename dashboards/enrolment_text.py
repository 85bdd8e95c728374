"""The words of the enrolment pages, Korean first; field names come from the enrolment file's
headers (registry.residents_text.LABELS), so a page and a spreadsheet say the same thing."""

from __future__ import annotations

from dashboards.i18n import TEXTS, pick
from ingest import devices
from registry.residents_edit import EDIT_LABELS
from registry.residents_text import LABELS

WORDS: dict[str, tuple[str, str]] = {
    "enrol_help": (
        "구 전체 대상자를 등록하고 수정합니다. 건강·출입 메모는 암호화되어 저장됩니다.",
        "Enrol and edit the district's residents. Health and access notes are stored encrypted.",
    ),
    "new_resident": ("새 대상자 등록", "Enrol a resident"),
    "edit_resident": ("대상자 정보 수정", "Edit resident"),
    "bulk_upload": ("명단 파일 올리기", "Upload a list"),
    "save": ("저장", "Save"),
    "saved": ("저장했습니다.", "Saved."),
    "not_saved": (
        "저장하지 않았습니다. 아래 항목을 고쳐 주세요:",
        "Nothing was saved. Please correct:",
    ),
    "identity": ("기본 정보", "Identity"),
    "phones": ("전화", "Phones"),
    "contacts": ("비상연락처", "Emergency contacts"),
    "contact_n": ("비상연락", "Contact"),
    "consent": ("동의 기록", "Consent record"),
    "notes": ("메모 (암호화 저장)", "Notes (stored encrypted)"),
    "none_assigned": ("지정 안 함 (동 담당자 전체)", "None (the dong's care managers)"),
    "inactive_manager": (
        "사용 중지된 계정 (그대로 두면 유지)",
        "deactivated (kept unless changed)",
    ),
    "yes": ("예", "Yes"),
    "no": ("아니오", "No"),
    "home_devices": ("가정 기기", "Home devices"),
    "gateway": ("게이트웨이", "Gateway"),
    "add_gateway": ("게이트웨이 추가", "Add gateway"),
    "remove": ("삭제", "Remove"),
    "add_sensor": ("센서 추가", "Add sensor"),
    "sensors": ("센서", "Sensors"),
    "no_sensors": ("등록된 센서가 없습니다.", "No sensors registered."),
    "no_gateways": ("등록된 게이트웨이가 없습니다.", "No gateways registered."),
    "heard_devices": (
        "이 게이트웨이에 신호가 잡힌 미등록 기기",
        "Unregistered devices whose signal this gateway picked up",
    ),
    "register": ("센서로 등록", "Register as sensor"),
    "unknown": ("알 수 없음", "unknown"),
    "upload_help": (
        "엑셀에서 'CSV UTF-8' 또는 'CSV(쉼표로 분리)'로 저장한 파일을 올려 주세요. 먼저 "
        "'검사만 하기'로 모든 잘못된 줄을 확인한 뒤 '적용'을 눌러 주세요. 이미 등록된 "
        "사례번호는 새로 등록하지 않고 기존 정보를 수정합니다.",
        "Upload a file saved from Excel as 'CSV UTF-8' or 'CSV'. Check it first (dry run) to "
        "see every bad line, then apply. A known external id updates that resident.",
    ),
    "file": ("파일", "File"),
    "dry_run": ("검사만 하기 (저장 안 함)", "Dry run (writes nothing)"),
    "apply": ("적용", "Apply"),
    "import_result": ("결과", "Result"),
    "encoding": ("인코딩", "Encoding"),
    "rows_n": ("총 {n}행", "{n} rows"),
    "created": ("새로 등록", "created"),
    "updated": ("수정", "updated"),
    "unchanged": ("변경 없음", "unchanged"),
    "written": ("저장했습니다.", "Written."),
    "not_written": ("아무것도 저장하지 않았습니다.", "Nothing was written."),
    "line": ("행", "Line"),
    "line_n": ("{n}행", "Line {n}"),
    "field": ("항목", "Field"),
    "reason": ("사유", "Reason"),
    "warnings": ("참고", "Warnings"),
    "admin_only": (
        "대상자 등록은 구 시스템 관리자만 할 수 있습니다.",
        "Only the district's admins can enrol residents.",
    ),
    "not_in_district": (
        "이 구에서 찾을 수 없습니다.",
        "Not found in this district.",
    ),
    "refused": ("입력을 고쳐 주세요.", "Please correct the input."),
    "in_use": ("이미 쓰이고 있습니다.", "Already in use."),
}

ROOM_LABELS: dict[str, tuple[str, str]] = {
    "entrance": ("현관", "entrance"),
    "living": ("거실", "living room"),
    "kitchen": ("부엌", "kitchen"),
    "bedroom": ("침실", "bedroom"),
    "bathroom": ("욕실", "bathroom"),
    "other": ("기타", "other"),
}
# safety devices (issue 20), as the emergency-safety service names them
SAFETY_KIND_LABELS: dict[str, tuple[str, str]] = {
    "button": ("응급호출기", "emergency call button"),
    "smoke": ("화재 감지기", "smoke (fire) detector"),
    "gas": ("가스 감지기", "gas detector"),
    "co": ("일산화탄소 감지기", "carbon monoxide detector"),
    "water_leak": ("누수 감지기", "water leak detector"),
    "tamper": ("분리 감지 센서", "tamper sensor (taken off its mount)"),
}
KIND_LABELS: dict[str, tuple[str, str]] = {
    **SAFETY_KIND_LABELS,
    **{k.value: v for k, v in devices.KIND_LABELS.items()},
}
# The form's words where a file header would read stiffly (the headers stay as they are).
FORM_LABELS: dict[str, tuple[str, str]] = {
    "consent_sensors": ("센서 설치 동의", "Consent to sensor installation"),
    "consent_calls": ("안부전화 동의", "Consent to check-in calls"),
    "consent_family": ("보호자 연락 동의", "Consent to contacting family"),
}


def word(lang: str, key: str) -> str:
    """A word of the enrolment pages, else of the other pages (dashboards.i18n)."""
    return pick(lang, WORDS[key] if key in WORDS else TEXTS[key])


def field_label(lang: str, field: str) -> str:
    """A resident's field as the enrolment file's header names it."""
    pair = (LABELS | EDIT_LABELS).get(field)
    return pick(lang, pair) if pair else field


def form_label(lang: str, field: str) -> str:
    """A resident's field as the form's checkbox names it, else as the file's header does."""
    return pick(lang, FORM_LABELS[field]) if field in FORM_LABELS else field_label(lang, field)


def room_label(lang: str, room: str) -> str:
    return pick(lang, ROOM_LABELS[room]) if room in ROOM_LABELS else room


def kind_label(lang: str, kind: str) -> str:
    return pick(lang, KIND_LABELS[kind]) if kind in KIND_LABELS else kind
