-- The shop database: owned by the shop application; Debezium may connect to read and replicate it.
REVOKE CONNECT, TEMPORARY ON DATABASE instashop FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE instashop TO instashop_app;
GRANT CONNECT ON DATABASE instashop TO debezium;
GRANT USAGE ON SCHEMA public TO debezium;
-- Debezium's snapshot reads every captured table.
ALTER DEFAULT PRIVILEGES FOR ROLE instashop_app IN SCHEMA public GRANT SELECT ON TABLES TO debezium;
