-- Registry: dongs, residents, care managers, gateways, sensors.
CREATE SCHEMA IF NOT EXISTS anbu;

CREATE TABLE anbu.dong (
    code        text PRIMARY KEY,             -- 행정동 코드
    name        text NOT NULL,
    district    text NOT NULL
);

CREATE TABLE anbu.resident (
    id            bigserial PRIMARY KEY,
    home          text NOT NULL UNIQUE,       -- the home's id (events format `home`)
    dong_code     text NOT NULL REFERENCES anbu.dong(code),
    display_name  text NOT NULL,              -- personal data: never logged
    phone         text NOT NULL,              -- personal data: never logged
    language      text NOT NULL DEFAULT 'ko' CHECK (language IN ('ko', 'en')),
    status        text NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'away', 'hospital', 'ended')),
    status_until  timestamptz,
    quiet_start   time,                       -- local (Asia/Seoul) quiet hours for calls
    quiet_end     time,
    consent       boolean NOT NULL DEFAULT true,
    notes         text,                       -- health notes: personal data
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX resident_dong ON anbu.resident (dong_code);

CREATE TABLE anbu.care_manager (
    id             bigserial PRIMARY KEY,
    dong_code      text NOT NULL REFERENCES anbu.dong(code),
    username       text NOT NULL UNIQUE,
    display_name   text NOT NULL,
    role           text NOT NULL DEFAULT 'manager'
                   CHECK (role IN ('manager', 'supervisor', 'admin')),
    phone          text NOT NULL,
    password_hash  text NOT NULL,
    active         boolean NOT NULL DEFAULT true
);
CREATE INDEX care_manager_dong ON anbu.care_manager (dong_code);

CREATE TABLE anbu.gateway (
    id                 text PRIMARY KEY,      -- its MQTT username, the <id> in gw/<id>/...
    resident_id        bigint NOT NULL REFERENCES anbu.resident(id),
    online             boolean,
    status_changed_at  timestamptz,
    last_seen_at       timestamptz
);
CREATE INDEX gateway_resident ON anbu.gateway (resident_id);

CREATE TABLE anbu.sensor (
    id          bigserial PRIMARY KEY,
    gateway_id  text NOT NULL REFERENCES anbu.gateway(id),
    vendor_id   text NOT NULL,                -- the id the gateway publishes
    kind        text NOT NULL CHECK (kind IN ('door', 'motion', 'contact', 'appliance', 'power')),
    room        text NOT NULL DEFAULT 'other'
                CHECK (room IN ('entrance', 'living', 'kitchen', 'bedroom', 'bathroom', 'other')),
    UNIQUE (gateway_id, vendor_id)
);
