"""Pruning one task end to end: train masks, bisect to the target loss, calibrate, count edges,
validate on held-out pairs."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial
from typing import Optional

import torch

from sparse_lens.model.identity import model_name as model_name_of
from sparse_lens.model.identity import weights_fingerprint
from sparse_lens.pruning.calibration import fit_calibration, oriented_difference
from sparse_lens.pruning.circuit import Circuit
from sparse_lens.pruning.config import PruningConfig
from sparse_lens.pruning.discretize import count_nodes, discretize, fixed_mask_hooks, ranked_units, units_masks
from sparse_lens.pruning.edges import count_edges, summarize_edges
from sparse_lens.pruning.mask_training import TrainingHistory, train_masks
from sparse_lens.pruning.masks import NodeMasks
from sparse_lens.pruning.refinement import (extra_check_pairs, pair_attributions, refine, refine_by_attribution,
                                           screened_losses)
from sparse_lens.pruning.task_batch import TaskBatch, chunked_difference, evaluate_task
from sparse_lens.pruning.validation import validate


@dataclass
class TaskData:
    """Sequences of one task: ``train`` for mask training, ``fit`` (fixed) for bisection and
    calibration, ``test`` held out for validation. Rows come in (positive, negative) pairs."""

    train: TaskBatch
    fit: TaskBatch
    test: TaskBatch


def prune(model, data: TaskData, means, cfg: PruningConfig, task: str = "", model_name: str = "") -> Circuit:
    """Find the smallest circuit whose task loss on ``data.fit`` is at most ``cfg.target_loss``."""
    start = time.perf_counter()
    data, full_fit_loss = prepare(model, data)
    masks = new_masks(model, means, cfg)
    history = None if skips(cfg, full_fit_loss) else train_masks(model, masks, data.train, cfg)
    return circuit_from_masks(model, data, means, cfg, masks, history, full_fit_loss, task, model_name, start)


def prepare(model, data: TaskData) -> tuple[TaskData, float]:
    """``data`` on the model's device (pruning runs where the model is) and the full model's fit loss."""
    device = next(model.parameters()).device
    data = TaskData(train=data.train.to(device), fit=data.fit.to(device), test=data.test.to(device))
    return data, evaluate_task(model, data.fit)[0]


def new_masks(model, means, cfg: PruningConfig) -> NodeMasks:
    device = next(model.parameters()).device
    return NodeMasks(model.cfg, means, tie_qk=cfg.tie_qk, heaviside_temp=cfg.heaviside_temp).to(device)


def skips(cfg: PruningConfig, full_fit_loss: float) -> bool:
    """The model has not learned the task: it is reported unreachable without training masks."""
    return bool(cfg.skip_above_target_factor) and full_fit_loss > cfg.skip_above_target_factor * cfg.target_loss


def circuit_from_masks(model, data: TaskData, means, cfg: PruningConfig, masks: NodeMasks,
                       history: Optional[TrainingHistory], full_fit_loss: float, task: str = "",
                       model_name: str = "", start: Optional[float] = None) -> Circuit:
    """The circuit of trained ``masks`` (``history`` None: training was skipped, the task is reported
    unreachable): discretize per ``cfg.discretization``, calibrate, count edges, validate. ``data`` on
    the model's device; ``losses["seconds"]`` counts from ``start`` (default: now). The benchmark of
    issue 22 applies every discretization to one training through it."""
    start = time.perf_counter() if start is None else start

    def loss_of(binary) -> float:
        return evaluate_task(model, data.fit, fixed_mask_hooks(binary, means))[0]

    skipped = history is None
    if skipped:
        result, reachable = None, False
    else:
        ranking = ranked_units(masks)
        # "paper": bisect over every unit; else within the trained circuit (τ > 0) when it meets the target
        upper = None if cfg.discretization == "paper" else int(sum(int((p > 0).sum()) for p in masks.tau.values()))
        bisect_target = cfg.target_loss
        result = first = discretize(masks, loss_of, bisect_target, ranking, upper)
        reachable = result.masks is not None
        bound = cfg.target_loss - cfg.refine_margin
        if reachable and cfg.discretization == "refined" and result.loss > bound:
            # refinement starts from a circuit at its own bound (else a margin could never apply); the
            # losses the first bisection evaluated are reused, and the diagnostics show both
            tighter = discretize(masks, loss_of, bound, ranking, upper, known=result.evaluations)
            if tighter.masks is not None:
                result, bisect_target = tighter, bound
    binary = result.masks if reachable else {s.name: torch.ones(s.shape, dtype=torch.bool) for s in masks.sites}
    refinement, fit_loss, not_started, rebisected = None, result.loss if reachable else None, None, None
    if reachable and cfg.discretization == "refined":
        refinement, binary, fit_loss, check_loss, rebisected = _refine(model, masks, means, data, cfg, ranking, result.k,
                                                                       upper, binary, fit_loss)
        if refinement is None:  # the bisected circuit missed the bound on the check pairs, and so did every larger one
            not_started = {"check_loss": check_loss, "bound": cfg.target_loss - cfg.refine_margin,
                           "bisection_target": bisect_target}
            if bisect_target != cfg.target_loss:  # the bisection to the bound bought nothing: the one at the target stands
                result, bisect_target, binary, fit_loss = first, cfg.target_loss, first.masks, first.loss
    with torch.no_grad():
        d_fit = chunked_difference(model, data.fit, fixed_mask_hooks(binary, means))
    calibration = fit_calibration(oriented_difference(d_fit, data.fit.positive), data.fit.positive, cfg.calibration_steps)
    circuit = Circuit(
        task=task, target_loss=cfg.target_loss, masks=binary, means=means, calibration=calibration,
        config=cfg.to_dict(), model=model_name or model_name_of(model), model_fingerprint=weights_fingerprint(model),
    )
    circuit.edges = summarize_edges(count_edges(model, binary))
    oriented_fit = oriented_difference(d_fit, data.fit.positive)
    circuit.losses = {
        "reachable": float(reachable),
        "fit_loss": fit_loss if reachable else float(circuit.calibration.__class__().loss(oriented_fit, data.fit.positive)),
        "fit_loss_calibrated": calibration.loss(oriented_fit, data.fit.positive),
        "full_fit_loss": full_fit_loss,
        "skipped": float(skipped),
        "bisection_evaluations": float(len(result.evaluations)) if result else 0.0,
        **({"bisection_nodes": float(count_nodes(result.masks)), "bisection_loss": result.loss,
            "bisection_edges": float(sum(count_edges(model, result.masks).values())) if refinement else float(circuit.n_edges)}
           if reachable else {}),
        **({"refinement_check_loss": refinement.loss, "refinement_seconds": refinement.seconds} if refinement else {}),
        **({"mask_training_steps_per_second": history.steps_per_second,
            "mask_training_final_task_loss": history.task_loss[-1]} if history else {}),
        **{f"test_{k}": v for k, v in validate(model, circuit, data.test).items()},
    }
    circuit.losses["seconds"] = time.perf_counter() - start
    circuit.diagnostics = {
        "full_fit_loss": full_fit_loss,
        "skipped": skipped,
        "discretization": cfg.discretization,
        "bisection": ({**result.diagnostics(bisect_target), "ranking": "tau", "upper": upper} if result else None),
        "refinement": refinement.diagnostics(cfg.target_loss, min(cfg.refine_pairs, (len(data.fit) + len(data.train)) // 2))
        if refinement else None,
        **({"refinement_not_started": not_started} if not_started else {}),
        **({"check_bisection": rebisected} if rebisected else {}),
        "mask_training": history.diagnostics() if history else None,
    }
    return circuit


def _refine(model, masks: NodeMasks, means, data: TaskData, cfg: PruningConfig, ranking, k: int,
            upper: Optional[int], binary, fit_loss):
    """Refinement of the circuit of the first ``k`` units of ``ranking`` (bisected on the fit pairs)
    on the check pairs; (result or None, masks, fit loss, check loss of the circuit it started from or
    missed at, the second bisection's record or None). A bisected circuit above the target less
    ``refine_margin`` on the (larger) check set is bisected again, on the check pairs, among the larger
    circuits of the same ranking (up to ``upper`` when that one is at the bound, as the first
    bisection); refinement starts from the result. Only when none meets the bound is the bisected
    circuit kept as it is (result None)."""
    bound = cfg.target_loss - cfg.refine_margin  # a drop is kept while the check loss stays at or under it
    extra = extra_check_pairs(data.fit, data.train, cfg.refine_pairs)
    losses_of = screened_losses(model, data.fit, extra, means, bound)
    start_loss = losses_of([binary])[0]
    rebisected = None
    if start_loss > bound:
        again = discretize(masks, lambda b: losses_of([b])[0], bound, ranking, upper, known={k: start_loss}, lower=k + 1)
        if again.masks is None:
            return None, binary, fit_loss, start_loss, None
        rebisected = {"from_k": k, "from_check_loss": start_loss, "k": again.k, "check_loss": again.loss,
                      # a circuit screened out on the fit pairs has no check loss (None: above the bound there)
                      "evaluations": [{"k": j, "loss": v if math.isfinite(v) else None} for j, v in sorted(again.evaluations.items())]}
        k, binary, start_loss = again.k, again.masks, again.loss
    units = ranking[:k]
    to_masks = partial(units_masks, masks)
    if cfg.refine_method == "attribution":
        def attributions_of(kept):  # every check pair's: the fit pairs' and the extra pairs'
            parts = [pair_attributions(model, b, to_masks(kept), means, kept, masks.tie_qk)
                     for b in (data.fit, extra) if b is not None]
            return torch.cat([d for d, _ in parts]), torch.cat([g for _, g in parts])

        refinement = refine_by_attribution(units, to_masks, losses_of, attributions_of, bound, start_loss, cfg.refine_batch)
    else:
        refinement = refine(units, to_masks, losses_of, bound, start_loss, cfg.refine_batch)
    binary = units_masks(masks, refinement.units)
    return refinement, binary, evaluate_task(model, data.fit, fixed_mask_hooks(binary, means))[0], start_loss, rebisected
