"""The load model, clock and history generator: pure functions of (meter, time), no sockets."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from simulators.clock import SimClock
from simulators.history import aligned_times
from simulators.load import MeterLoad, Profile, shape_at
from simulators.modbus import ModbusFleet
from simulators.mqtt import MqttFleet

DAY = datetime(2026, 11, 25, 17, tzinfo=UTC)  # local midnight in Ho Chi Minh City (UTC+7)


def local(hour: float) -> datetime:
    return DAY + timedelta(hours=hour)


def test_energy_is_the_integral_of_power_and_never_decreases() -> None:
    profile = Profile.seeded(7, "M-1")
    step = timedelta(minutes=7)
    t = DAY - timedelta(days=2)
    previous = profile.energy_kwh(t)
    while t < DAY + timedelta(days=2):
        t += step
        energy = profile.energy_kwh(t)
        assert energy >= previous
        # d(energy)/dt at t equals the power (central difference over one second)
        one = timedelta(seconds=1)
        slope_w = (profile.energy_kwh(t + one) - profile.energy_kwh(t - one)) / 2 * 3600 * 1000
        assert slope_w == pytest.approx(profile.power_w(t), rel=1e-4, abs=0.05)
        previous = energy


def test_daily_factors_sum_in_closed_form_and_energy_is_continuous_at_midnight() -> None:
    profile = Profile.seeded(5, "M-2")
    for days in (-401, -40, -7, -1, 0, 1, 2, 3, 365, 1000, 1001):
        direct = (
            sum(profile.day_factor(d) for d in range(days))
            if days >= 0
            else -sum(profile.day_factor(d) for d in range(days, 0))
        )
        assert profile._days_before(days) == pytest.approx(direct, abs=1e-9)
    assert all(0.6 < profile.day_factor(d) < 1.4 for d in range(-500, 2000))
    for k in range(-3, 4):
        midnight = DAY + timedelta(days=k)
        tiny = timedelta(microseconds=1)
        assert profile.energy_kwh(midnight - tiny) == pytest.approx(
            profile.energy_kwh(midnight), abs=1e-6
        )


def test_residential_shape_peaks_morning_and_evening_near_zero_at_night() -> None:
    assert max(range(24), key=lambda h: shape_at(h)) == 19
    assert shape_at(6) > 3 * shape_at(3)
    assert shape_at(3) < 0.1
    fleet_night = [Profile.seeded(1, f"M-{i}").power_w(local(3)) for i in range(20)]
    fleet_evening = [Profile.seeded(1, f"M-{i}").power_w(local(19.5)) for i in range(20)]
    assert sum(fleet_evening) > 8 * sum(fleet_night)
    daily = [
        Profile.seeded(1, f"M-{i}").energy_kwh(local(24))
        - Profile.seeded(1, f"M-{i}").energy_kwh(local(0))
        for i in range(20)
    ]
    assert all(2 < d < 40 for d in daily)  # a household's kWh per day
    assert len({round(d, 3) for d in daily}) == 20  # a seeded factor per meter


def test_instantaneous_values_are_consistent() -> None:
    load = MeterLoad(Profile.seeded(3, "T-1", phases=3))
    v = load.values(local(19))
    assert 200 < v["voltage_v"] < 245 and 49.9 < v["frequency_hz"] < 50.1
    for k in (1, 2, 3):
        assert v[f"current_l{k}"] == pytest.approx(
            v[f"power_l{k}"] / (v[f"voltage_l{k}"] * load.profile.power_factor)
        )
    assert v["power_l1"] + v["power_l2"] + v["power_l3"] == pytest.approx(v["power_total_w"])
    assert v["power_w"] == v["power_l1"]
    assert v["voltage_v"] == v["voltage_l1"] and v["current_a"] == v["current_l1"]


def test_register_reset_restarts_the_import_register() -> None:
    load = MeterLoad(Profile.seeded(3, "R-1"))
    before = load.values(local(10))["energy_import_kwh"]
    load.reset(local(12))
    assert load.values(local(10))["energy_import_kwh"] == before  # history is unchanged
    assert load.values(local(12))["energy_import_kwh"] == 0.0
    after = load.values(local(13))["energy_import_kwh"]
    assert 0 < after < 5
    assert after == pytest.approx(
        load.profile.energy_kwh(local(13)) - load.profile.energy_kwh(local(12))
    )


def test_same_seed_same_fleet_other_seed_other_fleet() -> None:
    a, b, c = (ModbusFleet(6, 2, seed=s) for s in (1, 1, 2))
    t = local(9)
    assert [m.customer for m in a.meters] == [m.customer for m in b.meters]
    assert [a.truth(m.serial, t) for m in a.meters] == [b.truth(m.serial, t) for m in b.meters]
    assert [a.truth(m.serial, t) for m in a.meters] != [c.truth(m.serial, t) for m in c.meters]
    assert len({m.customer.code for m in a.meters}) == 6


def test_history_for_back_fill_matches_the_live_truth() -> None:
    fleet = ModbusFleet(2, 1, seed=4)
    serial = fleet.meters[1].serial
    end = local(0)
    start = end - timedelta(days=61)
    history = list(fleet.history(serial, start, end, 900))
    assert len(history) == 61 * 96
    assert history[0].ts == start and history[-1].ts == end - timedelta(minutes=15)
    assert all(b.energy_import_kwh >= a.energy_import_kwh for a, b in itertools.pairwise(history))
    for reading in history[:: 96 * 10]:
        assert reading == fleet.truth(serial, reading.ts).at(serial, reading.ts)
    mqtt = MqttFleet("mqtt://127.0.0.1:1", 3, seed=4, interval=900)
    mq = list(mqtt.history(mqtt.meters[0].serial, start, end))
    assert len(mq) == 61 * 96 and mq[5] == mqtt.truth(mqtt.meters[0].serial, mq[5].ts)


def test_aligned_times() -> None:
    start = datetime(2026, 1, 1, 0, 7, tzinfo=UTC)
    assert list(aligned_times(start, start + timedelta(minutes=40), 900)) == [
        datetime(2026, 1, 1, 0, 15, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 30, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 45, tzinfo=UTC),
    ]
    with pytest.raises(ValueError):
        list(aligned_times(datetime(2026, 1, 1), datetime(2026, 1, 2), 60))


def test_clock_acceleration_and_frozen_time() -> None:
    frozen = SimClock.fixed(DAY)
    assert frozen.now() == DAY
    assert frozen.advance(90) == DAY + timedelta(seconds=90) == frozen.now()
    fast = SimClock(DAY, speed=1440)  # a day in a minute
    assert fast.wall_seconds(86400) == 60
    assert fast.now() >= DAY
    with pytest.raises(ValueError):
        SimClock(datetime(2026, 1, 1))
