"""The generator's decisions, without a database: reproducible plans whose outcomes hold their definition."""

import itertools
import random
from collections import Counter
from decimal import Decimal

import pytest
from click.testing import CliRunner

from instashop import cli
from instashop.devstack import cli as devstack_cli
from instashop.devstack import generator
from instashop.devstack.generator import GeneratorConfig, Summary
from instashop.devstack.generator.catalog import CATEGORIES, Catalog, Product, customer_row, product_row, reprice
from instashop.devstack.generator.lifecycle import (
    ChangePrice,
    DeleteSession,
    DeleteTransaction,
    Lifecycle,
    LifecycleRates,
    Refund,
    Settle,
)
from instashop.devstack.generator.runner import Pacer
from instashop.devstack.generator.sessions import (
    BOUNCE,
    CART_ABANDONMENT,
    CONVERSION,
    CartEvent,
    OutcomeMix,
    PageView,
    Search,
    SessionPlan,
    plan_session,
)
from instashop.settings import load_settings

PLANS = 600

SHOP_DSN = "postgresql://shop@db.example:5432/shop"


@pytest.fixture
def catalog() -> Catalog:
    rng = random.Random(99)
    products = [Product(i, r.name, r.category, r.price) for i, r in enumerate((product_row(rng) for _ in range(40)), 1)]
    return Catalog(list(range(1, 51)), products)


@pytest.fixture
def plans(catalog) -> list[SessionPlan]:
    rng = random.Random(2024)
    return [plan_session(rng, catalog) for _ in range(PLANS)]


def _cart_adds(plan: SessionPlan) -> list[CartEvent]:
    return [e for e in plan.events if isinstance(e, CartEvent) and e.action == "add"]


def _has_two_places(amount: Decimal) -> bool:
    return isinstance(amount, Decimal) and amount.as_tuple().exponent == -2


# --- reproducibility --------------------------------------------------------------------------------


def test_same_seed_gives_the_same_plans(catalog):
    first = [plan_session(random.Random(7), catalog) for _ in range(3)]
    one, two = random.Random(7), random.Random(7)
    assert [plan_session(one, catalog) for _ in range(200)] == [plan_session(two, catalog) for _ in range(200)]
    assert first[0] == first[1] == first[2]


def test_another_seed_gives_other_plans(catalog):
    one, two = random.Random(7), random.Random(8)
    assert [plan_session(one, catalog) for _ in range(50)] != [plan_session(two, catalog) for _ in range(50)]


def test_same_seed_gives_the_same_later_changes(catalog, plans):
    def changes(seed: int) -> list:
        lifecycle, done = Lifecycle(random.Random(seed)), []
        for tick, plan in enumerate(plans):
            lifecycle.on_session(tick, plan.outcome, f"sess_{tick}", tick if plan.purchase else None)
            for action in lifecycle.due(tick, catalog):
                lifecycle.on_applied(tick, action)
                done.append(action)
        return done

    assert changes(5) == changes(5)
    assert changes(5) != changes(6)


# --- outcome definitions ------------------------------------------------------------------------------


def test_all_three_outcomes_occur_in_roughly_the_default_mix(plans):
    share = {outcome: n / PLANS for outcome, n in Counter(p.outcome for p in plans).items()}
    mix = OutcomeMix()
    assert share[CONVERSION] == pytest.approx(mix.conversion, abs=0.06)
    assert share[CART_ABANDONMENT] == pytest.approx(mix.cart_abandonment, abs=0.06)
    assert share[BOUNCE] == pytest.approx(mix.bounce, abs=0.06)


def test_conversion_buys_the_cart_and_totals_exactly(plans):
    conversions = [p for p in plans if p.outcome == CONVERSION]
    assert conversions
    for plan in conversions:
        purchase = plan.purchase
        assert purchase is not None and purchase.items and _cart_adds(plan)
        assert purchase.total_amount == sum(item.amount for item in purchase.items)
        net = Counter()
        for event in plan.events:
            if isinstance(event, CartEvent):
                net[event.product_id] += event.quantity if event.action == "add" else -event.quantity
        assert {i.product_id: i.quantity for i in purchase.items} == +net
        prices = {e.product_id: e.unit_price for e in plan.events if isinstance(e, CartEvent)}
        assert all(item.unit_price == prices[item.product_id] for item in purchase.items)
        assert all(item.amount == item.quantity * item.unit_price for item in purchase.items)
        assert [e.page_type for e in plan.events[-2:]] == ["cart", "checkout"]


def test_cart_abandonment_adds_to_the_cart_and_never_pays(plans):
    abandoned = [p for p in plans if p.outcome == CART_ABANDONMENT]
    assert abandoned
    for plan in abandoned:
        assert _cart_adds(plan) and plan.purchase is None


def test_bounce_is_one_or_two_page_views_and_nothing_else(plans):
    bounces = [p for p in plans if p.outcome == BOUNCE]
    assert bounces
    for plan in bounces:
        assert 1 <= len(plan.events) <= 2 and all(isinstance(e, PageView) for e in plan.events)
        assert plan.purchase is None


def test_a_mix_can_force_one_outcome(catalog):
    rng = random.Random(1)
    assert {plan_session(rng, catalog, OutcomeMix(1, 0, 0)).outcome for _ in range(50)} == {CONVERSION}
    with pytest.raises(ValueError, match="outcome weights"):
        OutcomeMix(0, 0, 0)


def test_removes_never_exceed_what_the_cart_holds(plans):
    for plan in plans:
        held = Counter()
        for event in plan.events:
            if isinstance(event, CartEvent):
                held[event.product_id] += event.quantity if event.action == "add" else -event.quantity
                assert held[event.product_id] >= 0


# --- field values -----------------------------------------------------------------------------------


def test_amounts_are_exact_decimals_with_two_places(plans, catalog):
    amounts = [p.price for p in catalog.products]
    for plan in plans:
        for event in plan.events:
            if isinstance(event, CartEvent):
                amounts += [event.unit_price, event.amount]
                assert event.amount == event.quantity * event.unit_price
        if plan.purchase:
            amounts.append(plan.purchase.total_amount)
            amounts += [x for item in plan.purchase.items for x in (item.unit_price, item.amount)]
    assert all(_has_two_places(a) for a in amounts)


def test_unit_price_is_the_current_catalog_price(catalog, plans):
    prices = {p.product_id: p.price for p in catalog.products}
    for plan in plans:
        assert all(e.unit_price == prices[e.product_id] for e in plan.events if isinstance(e, CartEvent))


def test_event_times_strictly_increase_and_end_before_the_session(plans):
    for plan in plans:
        times = [e.at_ms for e in plan.events] + ([plan.purchase.at_ms] if plan.purchase else [])
        assert times[0] == 0
        assert all(a < b for a, b in itertools.pairwise(times))
        assert plan.duration_ms > times[-1]


def test_only_product_pages_carry_a_product(plans):
    page_views = [e for p in plans for e in p.events if isinstance(e, PageView)]
    assert {v.page_type for v in page_views} == {"home", "category", "product", "cart", "checkout"}
    assert all((v.product_id is not None) == (v.page_type == "product") for v in page_views)


def test_searches_have_text_and_a_result_count(plans):
    searches = [e for p in plans for e in p.events if isinstance(e, Search)]
    assert searches and all(s.query.strip() and s.results_count >= 0 for s in searches)


def test_row_counts_match_the_plan(plans):
    plan = next(p for p in plans if p.outcome == CONVERSION)
    counts = plan.row_counts()
    assert counts["sessions"] == counts["transactions"] == 1
    assert counts["transaction_items"] == len(plan.purchase.items)
    assert counts["page_views"] + counts["searches"] + counts["cart_events"] == len(plan.events)


def test_seed_rows_look_like_a_shop():
    rng = random.Random(3)
    customers = [customer_row(rng, n) for n in range(1, 201)]
    assert len({c.email for c in customers}) == 200
    assert all(c.email.isascii() and len(c.country) == 2 for c in customers)
    products = [product_row(rng) for _ in range(300)]
    assert {p.category for p in products} == set(CATEGORIES)
    assert all(_has_two_places(p.price) and p.price > 0 for p in products)


@pytest.mark.parametrize("price", [Decimal("0.49"), Decimal("9.99"), Decimal("1499.00")])
def test_reprice_changes_the_price_within_bounds(price):
    rng = random.Random(11)
    for _ in range(100):
        new = reprice(rng, price)
        assert new != price and _has_two_places(new) and new >= Decimal("0.99")
        assert new <= price * Decimal("1.15") + 1


# --- later changes -------------------------------------------------------------------------------------


def test_lifecycle_settles_every_transaction_later_and_follows_up(catalog):
    rates = LifecycleRates(payment_failure=0.5, refund=1.0, delete_failed=1.0, delete_bounce=1.0, price_change=0)
    lifecycle = Lifecycle(random.Random(4), rates)
    for tick in range(20):
        lifecycle.on_session(tick, CONVERSION, f"sess_{tick}", transaction_id=tick)
    lifecycle.on_session(20, BOUNCE, "sess_bounce", transaction_id=None)
    assert lifecycle.due(0, catalog) == []  # nothing is settled in the session that created it
    seen = []
    for tick in range(1, 200):
        for action in lifecycle.due(tick, catalog):
            seen.append(action)
            lifecycle.on_applied(tick, action)
    settles = [a for a in seen if isinstance(a, Settle)]
    assert sorted(a.transaction_id for a in settles) == list(range(20))
    assert {a.status for a in settles} == {"paid", "failed"}
    paid = {a.transaction_id for a in settles if a.status == "paid"}
    assert {a.transaction_id for a in seen if isinstance(a, Refund)} == paid
    assert {a.transaction_id for a in seen if isinstance(a, DeleteTransaction)} == {
        a.transaction_id for a in settles if a.status == "failed"
    }
    assert [a for a in seen if isinstance(a, DeleteSession)] == [DeleteSession("sess_bounce")]
    assert len(lifecycle) == 0


def test_lifecycle_changes_prices_of_catalog_products(catalog):
    lifecycle = Lifecycle(random.Random(4), LifecycleRates(price_change=1.0))
    changes = [a for tick in range(20) for a in lifecycle.due(tick, catalog)]
    assert len(changes) == 20 and all(isinstance(a, ChangePrice) for a in changes)
    change = changes[0]
    catalog.set_price(change.product_id, change.price)
    assert next(p for p in catalog.products if p.product_id == change.product_id).price == change.price


def test_default_rates_are_small_but_not_zero():
    rates = LifecycleRates()
    for rate in (rates.payment_failure, rates.refund, rates.delete_failed, rates.delete_bounce, rates.price_change):
        assert 0 < rate <= 0.25


# --- pacing, config and summary --------------------------------------------------------------------------


def test_pacer_spreads_events_over_time():
    now = [100.0]
    pacer = Pacer(1000, clock=lambda: now[0])
    assert pacer.delay(500) == pytest.approx(0.5)
    now[0] = 100.7
    assert pacer.delay(500) == 0.0
    assert Pacer(0, clock=lambda: now[0]).delay(10**9) == 0.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate": -1}, "rate"),
        ({"duration": 0}, "duration"),
        ({"sessions": 0}, "sessions"),
        ({"customers": 0}, "customers"),
        ({"products": -5}, "products"),
    ],
)
def test_config_rejects_bad_values(options, message):
    with pytest.raises(ValueError, match=message):
        GeneratorConfig(**options)


def test_summary_counts_row_changes(plans):
    summary = Summary("abc", "sess_abc")
    for plan in plans[:10]:
        summary.record_session(plan)
    summary.record_action(Settle(1, "paid"), 1)
    summary.record_action(DeleteSession("sess_x"), 1)
    inserted = sum(sum(p.row_counts().values()) for p in plans[:10])
    assert summary.session_count == 10
    assert summary.row_changes == inserted + 10 + 1 + 1  # + ended_at updates, settle, delete
    assert summary.updated["transactions -> paid"] == 1


# --- CLI validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--rate", "-1"], "--rate"),
        (["--rate", "fast"], "--rate"),
        (["--duration", "0"], "--duration"),
        (["--duration", "-3"], "--duration"),
        (["--sessions", "0"], "--sessions"),
        (["--sessions", "-2"], "--sessions"),
        (["--seed", "abc"], "--seed"),
        (["--customers", "0"], "--customers"),
        (["--products", "-1"], "--products"),
    ],
)
def test_cli_rejects_bad_options_naming_them(args, option, monkeypatch):
    monkeypatch.setattr(generator, "run", lambda *a, **k: pytest.fail("must not run with bad options"))
    result = CliRunner().invoke(cli.command_line(), ["generate", *args])
    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in result.output


def test_cli_passes_good_options_to_the_generator(monkeypatch, env_file):
    seen = {}
    monkeypatch.setenv("OLTP_DSN", SHOP_DSN)
    monkeypatch.setattr(devstack_cli, "load_settings", lambda: load_settings(env_file))

    def fake_run(dsn, options, **kwargs):
        seen.update(dsn=dsn, options=options)
        summary = Summary(options.run_id, options.session_prefix, stopped_by="sessions")
        summary.sessions[CONVERSION] = 1
        return summary

    monkeypatch.setattr(generator, "run", fake_run)
    args = ["generate", "--rate", "0", "--sessions", "5", "--duration", "2.5", "--seed", "42"]
    result = CliRunner().invoke(cli.command_line(), [*args, "--customers", "10", "--products", "3"])
    assert result.exit_code == 0, result.output
    options = seen["options"]
    assert (options.rate, options.sessions, options.duration, options.seed) == (0, 5, 2.5, 42)
    assert (options.customers, options.products, options.synchronous_commit) == (10, 3, True)
    assert seen["dsn"] == SHOP_DSN
    assert "generator run" in result.output


def test_cli_async_commit_flag_turns_synchronous_commit_off(monkeypatch, env_file):
    monkeypatch.setenv("OLTP_DSN", SHOP_DSN)
    monkeypatch.setattr(devstack_cli, "load_settings", lambda: load_settings(env_file))
    seen = []
    monkeypatch.setattr(generator, "run", lambda dsn, options, **kw: seen.append(options) or Summary("a", "sess_a"))
    result = CliRunner().invoke(cli.command_line(), ["generate", "--sessions", "1", "--async-commit"])
    assert result.exit_code == 0, result.output
    assert seen[0].synchronous_commit is False


def test_cli_reports_database_errors_without_a_traceback(monkeypatch, env_file):
    monkeypatch.setenv("OLTP_DSN", SHOP_DSN)
    monkeypatch.setattr(devstack_cli, "load_settings", lambda: load_settings(env_file))

    def failing_run(dsn, options, **kwargs):
        raise generator.GeneratorError("cannot connect to the OLTP database: refused")

    monkeypatch.setattr(generator, "run", failing_run)
    result = CliRunner().invoke(cli.command_line(), ["generate", "--sessions", "1"])
    assert result.exit_code == 1
    assert "cannot connect to the OLTP database" in result.output
