"""The one training loop (otgen.training.driver.drive) on a counter: where chunks end, when it saves,
what it does on a non-finite loss and on Ctrl-C."""

import math

import numpy as np
import pytest

from otgen.training.driver import curve_steps, drive


class Diverged(Exception):
    pass


def _run(total, start=0, last_saved=None, state=None, nan_at=None, interrupt_at=None, **kw):
    chunks, saves, history, curve = [], [], {}, kw.pop("curve", [])

    def advance(s, step, n):
        if interrupt_at is not None and step >= interrupt_at:
            raise KeyboardInterrupt
        chunks.append((step, n))
        loss = np.arange(step + 1, step + n + 1, dtype=float)
        if nan_at is not None and step < nan_at <= step + n:
            loss[nan_at - step - 1] = math.nan
        return s + n, {"loss": loss}

    out = drive(start if state is None else state, start, total, advance,
                save=lambda s, at: saves.append((s, at)),
                diverged=lambda at, m, saved: Diverged(at, m, saved), history=history, curve=curve,
                last_saved=last_saved, progress=False, **kw)
    return out, chunks, saves, history, curve


def test_chunks_end_on_log_checkpoint_and_curve_steps_and_saves_land_on_fixed_steps():
    out, chunks, saves, history, curve = _run(23, log_every=5, checkpoint_every=10, eval_steps=(7, 23),
                                              evaluate=lambda s: {"value": s})
    assert out == 23
    assert [a + n for a, n in chunks] == [5, 7, 10, 15, 20, 23]
    assert [at for _, at in saves] == [7, 10, 20, 23]  # the curve's step, multiples of 10, the end
    assert curve == [{"step": 7, "value": 7}, {"step": 23, "value": 23}]
    assert history["step"] == [5, 7, 10, 15, 20, 23]
    assert history["loss"][0] == pytest.approx(3.0) and history["loss"][1] == pytest.approx(6.5)  # chunk means


def test_a_resumed_run_takes_the_uninterrupted_runs_chunks_and_skips_recorded_curve_points():
    _, whole, whole_saves, _, _ = _run(30, log_every=5, checkpoint_every=10)
    _, rest, rest_saves, _, curve = _run(30, start=10, last_saved=10, log_every=5, checkpoint_every=10,
                                         eval_steps=(10, 20), evaluate=lambda s: {"v": s},
                                         curve=[{"step": 20, "v": -1}])
    assert rest == [c for c in whole if c[0] >= 10]
    assert [at for _, at in rest_saves] == [at for _, at in whole_saves if at > 10]
    assert curve == [{"step": 20, "v": -1}]  # already there: not evaluated again


def test_a_non_finite_loss_stops_before_that_state_is_saved():
    with pytest.raises(Diverged) as e:
        _run(40, log_every=5, checkpoint_every=10, nan_at=13)
    at, metrics, saved = e.value.args
    assert at == 13 and math.isnan(metrics["loss"]) and saved == 10


def test_ctrl_c_saves_the_last_completed_chunk_and_reraises():
    saves = []

    def advance(s, step, n):
        if step >= 15:
            raise KeyboardInterrupt
        return s + n, {"loss": np.ones(n)}

    with pytest.raises(KeyboardInterrupt):
        drive(0, 0, 40, advance, save=lambda s, at: saves.append(at), diverged=lambda *a: Diverged(*a),
              log_every=5, checkpoint_every=10, history={}, progress=False)
    assert saves == [10, 15]


def test_nothing_to_do_saves_only_a_run_never_saved_and_bad_periods_are_refused():
    assert _run(10, start=10, last_saved=10, log_every=5, checkpoint_every=5)[2] == []
    assert [at for _, at in _run(0, log_every=5, checkpoint_every=5)[2]] == [0]  # a fresh, empty run is written
    with pytest.raises(ValueError, match="checkpoint_every"):
        _run(10, log_every=5, checkpoint_every=0)


def test_curve_steps_are_log_spaced_and_end_on_the_budget():
    assert curve_steps(12_000) == (1000, 2000, 3000, 5000, 10_000, 12_000)
    assert curve_steps(0) == ()
