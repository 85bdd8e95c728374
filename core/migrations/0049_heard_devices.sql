-- Devices a gateway has been heard from but no sensor is registered for: from discovery
-- (Home Assistant configs, Zigbee2MQTT's device list, Shelly's announce, Tasmota's discovery)
-- and from readings dead-lettered as an unknown sensor. Written by ingest only, in the same
-- transaction as the batch; a registered device is told by a join with anbu.sensor.
CREATE TABLE anbu.heard_devices (
    gateway_id      text NOT NULL REFERENCES anbu.gateway(id) ON DELETE CASCADE,
    device          text NOT NULL,          -- the vendor id a sensor would be registered under
    source          text NOT NULL,          -- zigbee2mqtt, esphome, tasmota, shelly, native...
    vendor_class    text,                   -- as announced: binary_sensor/door, SHDW-2...
    announced_kind  text CHECK (announced_kind IN ('door', 'motion', 'contact', 'appliance', 'power')),
    payload_kind    text CHECK (payload_kind IN ('door', 'motion', 'contact', 'appliance', 'power')),
    model           text,
    name            text,
    configs         text[] NOT NULL DEFAULT '{}',  -- retained topics announcing it, still there
    first_heard     timestamptz NOT NULL,
    last_heard      timestamptz NOT NULL,
    removed_at      timestamptz,            -- its last config emptied; readings are kept
    dead_letters    integer NOT NULL DEFAULT 0, -- readings refused as from an unknown sensor
    PRIMARY KEY (gateway_id, device)
);
CREATE INDEX heard_devices_configs ON anbu.heard_devices USING gin (configs);
-- a device's dead letters are found by their gateway's topic prefix
CREATE INDEX dead_letters_pending_topic ON anbu.dead_letters (topic text_pattern_ops)
    WHERE replayed_at IS NULL;
