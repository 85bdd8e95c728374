-- The read-only role behind Grafana's "anbu PostgreSQL" datasource: what the care overview
-- reads, and of the residents only their id, home id, dong and status; never their names,
-- phone numbers or notes (column privileges on anbu.resident). Run once as an administrator,
-- after `anbu migrate`, with a real password:
--   psql "$ANBU_DATABASE_URL" -f dashboards/grafana/grafana_reader.sql
CREATE ROLE anbu_grafana LOGIN PASSWORD 'change-me';
GRANT USAGE ON SCHEMA anbu TO anbu_grafana;
GRANT SELECT ON anbu.dong, anbu.alerts, anbu.findings, anbu.home_activity,
                anbu.activity_hourly, anbu.gateway, anbu.incidents
    TO anbu_grafana;
GRANT SELECT (id, home, dong_code, status, status_until) ON anbu.resident TO anbu_grafana;
ALTER ROLE anbu_grafana SET statement_timeout = '10s';
ALTER ROLE anbu_grafana SET default_transaction_read_only = on;
