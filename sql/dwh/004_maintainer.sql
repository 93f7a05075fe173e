-- Partition maintenance (the dwh_partition_maintenance and dwh_retention DAGs) runs as
-- dwh_maintainer. PostgreSQL has no grantable privilege for creating, attaching, detaching or
-- dropping partitions: only the partitioned table's owner may. So dwh_maintainer owns
-- realtime_events and its partitions, and may create tables in the schema, nothing more; the
-- consumer keeps writing rows through its table grants, which ownership changes preserve.
-- LOGIN and the password (DWH_MAINTAINER_PASSWORD in .env) are set where the stack bootstraps
-- the other roles; this file only makes sure the role exists.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dwh_maintainer') THEN
        CREATE ROLE dwh_maintainer NOLOGIN;
    END IF;
END $$;

GRANT CONNECT ON DATABASE dwh TO dwh_maintainer;
GRANT USAGE, CREATE ON SCHEMA public TO dwh_maintainer;

-- Partitions it creates stay readable by Superset/SQL Lab, like everything the migrations create.
ALTER DEFAULT PRIVILEGES FOR ROLE dwh_maintainer IN SCHEMA public GRANT SELECT ON TABLES TO dwh_readonly;

ALTER TABLE realtime_events OWNER TO dwh_maintainer;

-- Partitions created by a superuser (e.g. `instashop partitions ensure` with the admin DSN) are
-- owned by it; the maintenance DAGs call this first so they can later detach and drop them. It runs
-- as its owner (the superuser) but can only hand partitions of realtime_events to dwh_maintainer.
CREATE OR REPLACE FUNCTION adopt_realtime_events_partitions() RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    part regclass;
BEGIN
    FOR part IN
        SELECT c.oid::regclass FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'public.realtime_events'::regclass AND c.relowner <> 'dwh_maintainer'::regrole
        ORDER BY c.relname
    LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO dwh_maintainer', part);
        RETURN NEXT part::text;
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION adopt_realtime_events_partitions() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION adopt_realtime_events_partitions() TO dwh_maintainer;

SELECT count(*) FROM adopt_realtime_events_partitions();
