-- The shop's OLTP schema: every business event of the DWH spec has a source table here.
-- All timestamps are timestamptz (UTC); money is numeric(12,2); every table has a primary key,
-- which Debezium uses as the Kafka message key (so changes to one row stay in order).

CREATE TABLE IF NOT EXISTS customers (
    customer_id serial       PRIMARY KEY,
    name        varchar(255) NOT NULL,
    email       varchar(255) NOT NULL UNIQUE,
    country     varchar(2)   NOT NULL,
    created_at  timestamptz  NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS products (
    product_id serial        PRIMARY KEY,
    name       varchar(255)  NOT NULL,
    category   varchar(100)  NOT NULL,
    price      numeric(12,2) NOT NULL CHECK (price >= 0),
    created_at timestamptz   NOT NULL DEFAULT now(),
    updated_at timestamptz   NOT NULL DEFAULT now()
);

-- A visit to the shop. ended_at is set when the visitor leaves.
CREATE TABLE IF NOT EXISTS sessions (
    session_id  varchar(100) PRIMARY KEY,
    customer_id integer      NOT NULL REFERENCES customers,
    device      varchar(20)  NOT NULL,
    started_at  timestamptz  NOT NULL,
    ended_at    timestamptz
);

-- user_behavior events.
CREATE TABLE IF NOT EXISTS page_views (
    page_view_id bigserial    PRIMARY KEY,
    session_id   varchar(100) NOT NULL REFERENCES sessions ON DELETE CASCADE,
    customer_id  integer      NOT NULL REFERENCES customers,
    page_type    varchar(30)  NOT NULL,  -- home, category, product, cart, checkout
    product_id   integer      REFERENCES products,
    viewed_at    timestamptz  NOT NULL
);

-- search events.
CREATE TABLE IF NOT EXISTS searches (
    search_id     bigserial    PRIMARY KEY,
    session_id    varchar(100) NOT NULL REFERENCES sessions ON DELETE CASCADE,
    customer_id   integer      NOT NULL REFERENCES customers,
    query         varchar(255) NOT NULL,
    results_count integer      NOT NULL,
    searched_at   timestamptz  NOT NULL
);

-- cart_event events: amount = quantity * unit_price at the time of the action.
CREATE TABLE IF NOT EXISTS cart_events (
    cart_event_id bigserial     PRIMARY KEY,
    session_id    varchar(100)  NOT NULL REFERENCES sessions ON DELETE CASCADE,
    customer_id   integer       NOT NULL REFERENCES customers,
    product_id    integer       NOT NULL REFERENCES products,
    action        varchar(10)   NOT NULL CHECK (action IN ('add', 'remove')),
    quantity      integer       NOT NULL CHECK (quantity > 0),
    unit_price    numeric(12,2) NOT NULL,
    amount        numeric(12,2) NOT NULL,
    created_at    timestamptz   NOT NULL
);

-- transaction events; status moves pending -> paid | failed, paid -> refunded.
CREATE TABLE IF NOT EXISTS transactions (
    transaction_id bigserial     PRIMARY KEY,
    customer_id    integer       NOT NULL REFERENCES customers,
    session_id     varchar(100)  REFERENCES sessions ON DELETE SET NULL,
    total_amount   numeric(12,2) NOT NULL,
    payment_method varchar(20)   NOT NULL,
    status         varchar(20)   NOT NULL CHECK (status IN ('pending', 'paid', 'failed', 'refunded')),
    created_at     timestamptz   NOT NULL,
    updated_at     timestamptz   NOT NULL
);

-- transaction_item events: amount = quantity * unit_price.
CREATE TABLE IF NOT EXISTS transaction_items (
    transaction_item_id bigserial     PRIMARY KEY,
    transaction_id      bigint        NOT NULL REFERENCES transactions ON DELETE CASCADE,
    product_id          integer       NOT NULL REFERENCES products,
    quantity            integer       NOT NULL CHECK (quantity > 0),
    unit_price          numeric(12,2) NOT NULL,
    amount              numeric(12,2) NOT NULL,
    created_at          timestamptz   NOT NULL
);

CREATE INDEX IF NOT EXISTS page_views_session_idx ON page_views (session_id);
CREATE INDEX IF NOT EXISTS searches_session_idx ON searches (session_id);
CREATE INDEX IF NOT EXISTS cart_events_session_idx ON cart_events (session_id);
CREATE INDEX IF NOT EXISTS transactions_session_idx ON transactions (session_id);
CREATE INDEX IF NOT EXISTS transaction_items_transaction_idx ON transaction_items (transaction_id);

-- What Debezium captures: a publication made here by the tables' owner, so the connector
-- needs no superuser (publication.autocreate.mode=disabled).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'instashop_cdc') THEN
        CREATE PUBLICATION instashop_cdc FOR TABLE
            customers, products, sessions, page_views, searches, cart_events, transactions,
            transaction_items;
    END IF;
END $$;
