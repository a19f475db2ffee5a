"""The end of an epoch: the evaluations that are due, the metrics lines, the console line.

The test split is evaluated every --eval-every epochs and after the last one, and every
--eval-every-steps steps, within an epoch too (its time is not the epoch's training time);
the whole training set only with --eval-train, or when an adaptive sampler is due to relearn every
sample's loss from it (its numbers are then reported too, since they are paid for). Every
rank reaches the same decisions from the same configuration, so the collectives match.
"""
from __future__ import annotations

import math
import time

from ..errors import TrainingFailure
from .evaluate import evaluate_shares


class EpochReport:
    """What the evaluations need: the run's configuration, model, data, sampler, the data
    parallelism (to settle pending updates first) and a guard for the collectives; the
    position in training is passed to each call."""

    def __init__(self, cfg, model, dp, comm, ds, sampler, feed, guard):
        self.cfg, self.model, self.dp, self.comm = cfg, model, dp, comm
        self.ds, self.sampler, self.feed, self._guard = ds, sampler, feed, guard
        self._tested = None                # (step, numbers) of the last test evaluation

    def steps_due(self, step: int) -> bool:
        """--eval-every-steps: the test split is due after ``step`` steps."""
        every = self.cfg.eval_every_steps
        return every > 0 and step % every == 0

    def test_due(self, epoch: int, last: bool, step: int) -> bool:
        every = self.cfg.eval_every
        return last or (every > 0 and epoch % every == 0) or self.steps_due(step)

    def test(self, metrics, step: int, epoch: int) -> dict:
        """The test split evaluated after ``step`` steps, timed, and its metrics line; once per
        step (an evaluation within the epoch that ended there serves the epoch's line)."""
        if self._tested is not None and self._tested[0] == step:
            return self._tested[1]
        t_eval = time.perf_counter()
        test = self.evaluate_test(step)
        test["time_s"] = time.perf_counter() - t_eval
        metrics.write("eval", {"epoch": epoch, "step": step, "split": "test", **test})
        if not math.isfinite(test["loss"]):
            # finite parameters whose evaluation overflows (the same on every rank: the
            # loss is all-reduced): a diverged model, not a result to report and save
            raise TrainingFailure(f"the test loss is {test['loss']} after step {step - 1}: "
                                  "the model overflows in evaluation (the run diverged; "
                                  "nothing was saved from this state)")
        self._tested = (step, test)
        return test

    def within_epoch(self, metrics, log, step: int, epoch: int) -> dict:
        """--eval-every-steps inside an epoch (``epoch``: 1-based, the one in progress): the
        test split now, one console line; its time is left out of the epoch's training time."""
        test = self.test(metrics, step, epoch)
        log.exclude(test["time_s"])
        if log.say is not None:
            log.progress.write(f"eval  step {step:>6}  epoch {epoch:>3}  test_loss "
                               f"{test['loss']:.4f}  test_acc {test['accuracy']:.4f}  "
                               f"{test['time_s']:.1f} s", log.say)
        return {"epochs": epoch, "steps": step, "within_epoch": True,
                "test_loss": test["loss"], "test_accuracy": test["accuracy"]}

    def _train_set_due(self, epoch_complete: bool, epoch: int) -> bool:
        sampler_wants = (epoch_complete and self.sampler.adaptive
                         and self.sampler.needs_refresh(epoch))
        return self.cfg.eval_train or sampler_wants

    def evaluate_test(self, step: int) -> dict:
        self.dp.flush()
        metrics, *_ = evaluate_shares(
            self.model, self.comm, self.ds.x_test, self.ds.y_test, self.cfg.eval_batch_size,
            lambda: self._guard(f"allreduce of the evaluation at step {step}", "eval"))
        return metrics

    def evaluate_training_set(self, refresh: bool, step: int, epoch: int) -> dict:
        """Loss and accuracy over the whole training set (inference mode), so samplers are
        compared on the same quantity; adaptive samplers may take the per-sample losses."""
        self.dp.flush()
        metrics, losses, bounds, sizes = evaluate_shares(
            self.model, self.comm, self.ds.x_train, self.ds.y_train, self.cfg.eval_batch_size,
            lambda: self._guard(f"allreduce of the training-set evaluation at step {step}",
                                "eval"))
        if refresh:
            self.feed.refresh(step, epoch, losses, bounds, sizes)
        return metrics

    def finish_epoch(self, metrics, say, log, last: bool, step: int, epoch: int, pos: int) -> dict:
        """Evaluate what is due, write the epoch's metrics lines and print one line
        (``epoch``, ``pos``: the position after ``step`` steps, 0-based)."""
        complete = pos == 0
        epoch_now = epoch
        epoch = epoch if complete else epoch + 1              # 1-based: the epoch just trained
        train_line = log.training_line(epoch, step)
        if self.dp.auto is not None:
            train_line["comm"] = self.dp.auto.summary()
        metrics.write("epoch", train_line)
        result = {"epochs": epoch, "steps": step, "train_loss": train_line["loss"]}
        text = (f"epoch {epoch:>3}  step {step:>6}  loss {train_line['loss']:.4f}  "
                f"acc {train_line['accuracy']:.4f}")
        if "since_step" in train_line:         # resumed from a checkpoint without the sums
            text += f" (steps {train_line['since_step'] + 1}-{step} only)"
        if self.test_due(epoch, last, step):
            test = self.test(metrics, step, epoch)
            result.update(test_loss=test["loss"], test_accuracy=test["accuracy"])
            text += f"  test_loss {test['loss']:.4f}  test_acc {test['accuracy']:.4f}"
        if self._train_set_due(complete, epoch_now):
            t_eval = time.perf_counter()
            train_set = self.evaluate_training_set(complete, step, epoch_now)
            train_set["time_s"] = time.perf_counter() - t_eval
            metrics.write("eval", {"epoch": epoch, "step": step, "split": "train", **train_set})
            if self.cfg.eval_train:
                text += f"  train_set_loss {train_set['loss']:.4f}"
        say(f"{text}  lr {train_line['lr']:.3g}  {train_line['samples_per_s']:.0f} img/s  "
            f"{train_line['time_s']:.1f} s", flush=True)
        return result
