-- Who may reach the warehouse: the consumer (dwh_writer) and Superset/SQL Lab (dwh_readonly).
-- Table-level write grants are given per table, next to each CREATE TABLE.
REVOKE CONNECT, TEMPORARY ON DATABASE dwh FROM PUBLIC;
GRANT CONNECT ON DATABASE dwh TO dwh_writer, dwh_readonly;

REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO dwh_writer, dwh_readonly;

-- Everything the migrations create is readable by the read-only role (dashboards, SQL Lab).
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO dwh_readonly;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON SEQUENCES TO dwh_readonly;
