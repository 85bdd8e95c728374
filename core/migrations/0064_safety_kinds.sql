-- issue 20: emergency buttons and fire, gas, CO, water-leak and tamper detectors are sensors
-- too (core.domain.SensorKind). Their readings are events coded as core.domain.AlarmValue /
-- ButtonValue (0 clear/cancel, 1 alarm/press, 2 test/long press).
ALTER TABLE anbu.sensor DROP CONSTRAINT sensor_kind_check;
ALTER TABLE anbu.sensor ADD CONSTRAINT sensor_kind_check CHECK (kind IN (
    'door', 'motion', 'contact', 'appliance', 'power',
    'button', 'smoke', 'gas', 'co', 'water_leak', 'tamper'));
ALTER TABLE anbu.heard_devices DROP CONSTRAINT heard_devices_announced_kind_check;
ALTER TABLE anbu.heard_devices ADD CONSTRAINT heard_devices_announced_kind_check
    CHECK (announced_kind IN ('door', 'motion', 'contact', 'appliance', 'power',
                              'button', 'smoke', 'gas', 'co', 'water_leak', 'tamper'));
ALTER TABLE anbu.heard_devices DROP CONSTRAINT heard_devices_payload_kind_check;
ALTER TABLE anbu.heard_devices ADD CONSTRAINT heard_devices_payload_kind_check
    CHECK (payload_kind IN ('door', 'motion', 'contact', 'appliance', 'power',
                            'button', 'smoke', 'gas', 'co', 'water_leak', 'tamper'));
