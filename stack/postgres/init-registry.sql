-- docker-compose only (scripts/stack creates it with psql): the schema registry keeps
-- its schemas in a database of its own, so schema ids survive a registry restart.
CREATE DATABASE registry OWNER bridge;
