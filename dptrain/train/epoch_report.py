"""The end of an epoch: the evaluations that are due, the metrics lines, the console line.

The test split is evaluated every --eval-every epochs and after the last one; the whole
training set only with --eval-train, or when an adaptive sampler is due to relearn every
sample's loss from it (its numbers are then reported too, since they are paid for). Every
rank reaches the same decisions from the same configuration, so the collectives match.
"""
from __future__ import annotations

import math

from ..errors import TrainingFailure
from .evaluate import evaluate_shares


class EpochReport:
    def __init__(self, trainer):
        self.t = trainer

    def test_due(self, epoch: int, last: bool) -> bool:
        every = self.t.cfg.eval_every
        return last or (every > 0 and epoch % every == 0)

    def _train_set_due(self, epoch_complete: bool) -> bool:
        t = self.t
        sampler_wants = (epoch_complete and t.sampler.adaptive
                         and t.sampler.needs_refresh(t.epoch))
        return t.cfg.eval_train or sampler_wants

    def evaluate_test(self) -> dict:
        t = self.t
        t.dp.flush()
        metrics, *_ = evaluate_shares(
            t.model, t.comm, t.ds.x_test, t.ds.y_test, t.cfg.eval_batch_size,
            lambda: t._guard(f"allreduce of the evaluation at step {t.step}"))
        return metrics

    def evaluate_training_set(self, refresh: bool) -> dict:
        """Loss and accuracy over the whole training set (inference mode), so samplers are
        compared on the same quantity; adaptive samplers may take the per-sample losses."""
        t = self.t
        t.dp.flush()
        metrics, losses, bounds, sizes = evaluate_shares(
            t.model, t.comm, t.ds.x_train, t.ds.y_train, t.cfg.eval_batch_size,
            lambda: t._guard(f"allreduce of the training-set evaluation at step {t.step}"))
        if refresh:
            t.feed.refresh(t.step, t.epoch, losses, bounds, sizes)
        return metrics

    def finish_epoch(self, metrics, say, log, last: bool) -> dict:
        """Evaluate what is due, write the epoch's metrics lines and print one line."""
        t = self.t
        complete = t.pos == 0
        epoch = t.epoch if complete else t.epoch + 1          # 1-based: the epoch just trained
        train_line = log.training_line(epoch, t.step)
        if t.dp.auto is not None:
            train_line["comm"] = t.dp.auto.summary()
        metrics.write("epoch", train_line)
        result = {"epochs": epoch, "steps": t.step, "train_loss": train_line["loss"]}
        text = (f"epoch {epoch:>3}  step {t.step:>6}  loss {train_line['loss']:.4f}  "
                f"acc {train_line['accuracy']:.4f}")
        if "since_step" in train_line:         # resumed from a checkpoint without the sums
            text += f" (steps {train_line['since_step'] + 1}-{t.step} only)"
        if self.test_due(epoch, last):
            test = self.evaluate_test()
            metrics.write("eval", {"epoch": epoch, "step": t.step, "split": "test", **test})
            result.update(test_loss=test["loss"], test_accuracy=test["accuracy"])
            if not math.isfinite(test["loss"]):
                # finite parameters whose evaluation overflows (the same on every rank: the
                # loss is all-reduced): a diverged model, not a result to report and save
                raise TrainingFailure(f"the test loss is {test['loss']} after step {t.step - 1}: "
                                      "the model overflows in evaluation (the run diverged; "
                                      "nothing was saved from this state)")
            text += f"  test_loss {test['loss']:.4f}  test_acc {test['accuracy']:.4f}"
        if self._train_set_due(complete):
            train_set = self.evaluate_training_set(refresh=complete)
            metrics.write("eval", {"epoch": epoch, "step": t.step, "split": "train", **train_set})
            if t.cfg.eval_train:
                text += f"  train_set_loss {train_set['loss']:.4f}"
        say(f"{text}  lr {train_line['lr']:.3g}  {train_line['samples_per_s']:.0f} img/s  "
            f"{train_line['time_s']:.1f} s", flush=True)
        return result
