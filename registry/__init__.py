"""The registry: dongs, residents, care managers, gateways and sensors, and the rules for changing
them. It imports only the kernel (`core`); ingest, detectors, calls, alerts, dashboards and the
simulated town read and write the registry through these functions.
"""

from registry.changes import (
    CAP_MAX_H,
    CAP_MIN_H,
    QUIET_MAX_H,
    SETTABLE_STATUSES,
    STATUS_MAX_DAYS,
    InvalidChange,
    ResidentEnded,
    ResidentNotFound,
    check_level_caps,
    check_quiet_hours,
    check_status,
    set_level_caps,
    set_quiet_hours,
    set_status,
)
from registry.enrolment import (
    ROOMS,
    add_care_manager,
    add_dong,
    add_gateway,
    add_resident,
    add_sensor,
    hash_password,
    verify_password,
)
from registry.phones import InvalidPhone, PhoneKind, normalise_phone, parse_phone
from registry.residents_csv import FileRefused, LineError, ResidentRow, parse_record
from registry.residents_export import export_residents
from registry.residents_import import (
    ImportReport,
    enrol_residents,
    import_residents,
    load_dongs,
)
from registry.sensors import SensorRef, load_sensors

__all__ = [
    "CAP_MAX_H",
    "CAP_MIN_H",
    "QUIET_MAX_H",
    "ROOMS",
    "SETTABLE_STATUSES",
    "STATUS_MAX_DAYS",
    "FileRefused",
    "ImportReport",
    "InvalidChange",
    "InvalidPhone",
    "LineError",
    "PhoneKind",
    "ResidentEnded",
    "ResidentNotFound",
    "ResidentRow",
    "SensorRef",
    "add_care_manager",
    "add_dong",
    "add_gateway",
    "add_resident",
    "add_sensor",
    "check_level_caps",
    "check_quiet_hours",
    "check_status",
    "enrol_residents",
    "export_residents",
    "hash_password",
    "import_residents",
    "load_dongs",
    "load_sensors",
    "normalise_phone",
    "parse_phone",
    "parse_record",
    "set_level_caps",
    "set_quiet_hours",
    "set_status",
    "verify_password",
]
