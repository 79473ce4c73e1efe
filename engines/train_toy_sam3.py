#!/usr/bin/env python3
"""Train a tiny SAM 3 on the shapes world (CPU only, seeded, resumable).

    .venv/bin/python engines/train_toy_sam3.py --work engines/work/toy-train --steps 24000
    .venv/bin/python engines/train_toy_sam3.py --work engines/work/toy-train --finish

The model is a standard transformers ``Sam3Model`` (config from
../shared/SAM3-NOTES.md: ViT 96 wide, 3 layers; FPN/DETR/mask 64 wide; 16
queries; CLIP text 32 wide, 2 layers).  Loss: DETR-style set loss with
Hungarian matching (classification, L1 and GIoU box costs); BCE on the query
logits (presence weight 4), L1 + GIoU on boxes, BCE + dice on the matched masks
(at image resolution, as post-processing sees them), BCE on presence.
With ``--aux-loss`` every earlier decoder layer gets its own matching and class,
box and presence losses (``make toy`` has the recorded run's settings).

Without a special initialisation the queries never separate: anchors start
spread over the image, query embeddings larger than default, and the box
relative-position bias penalises attention outside each query's box.

Every ``--save-every`` steps the state (model, optimiser, step) goes to
``WORK/state.pt``; a rerun with the same WORK resumes.  The batch of step k is
generated from seed (SEED, k), so a resumed run sees the same data.  A
``--deadline-minutes`` stop saves and exits cleanly (rerun to continue).
Settings may change on resume (``--weights``, ``--prompts``, ...): each run
appends its settings and first step to ``WORK/settings.jsonl``.
Fine-tuning (issue 18, ``make toy``'s last phase): ``--init CHECKPOINT`` starts a new
WORK from a checkpoint's weights with a fresh optimiser, ``--wide SHARE`` draws that
share of each step's images from the wide world (shapes_world.sample_wide_scene), and
``--schedule-minutes M`` lets the cosine LR follow wall time where it is further along
than the step count (and ends the run when M minutes are up).
``--finish`` writes the trained weights, rounded to float16 and saved as a
float16 transformers checkpoint, to ``WORK/checkpoint`` (what export reads).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import make_tiny_sam3  # noqa: E402
import shapes_world as world  # noqa: E402

SEED = 7
IMAGE_SIZE = 112  # the model's square input (--image-size)


def toy_config():
    return make_tiny_sam3.small_config(vit_hidden=96, vit_layers=3, global_attn=[2], width=64, queries=16,
                                       image_size=IMAGE_SIZE)


def first_world_scene(rng):
    """A first-world scene as the model sees it: drawn at 112 px (as the recorded test set
    is), stretched to a larger input as the element would."""
    scene = world.sample_scene(rng, world.FIRST_WORLD_SIZE)
    return scene if IMAGE_SIZE == world.FIRST_WORLD_SIZE else world.to_square(scene, IMAGE_SIZE)


def initialise(model, seed: int) -> None:
    """The initialisation that lets queries separate (see the module docstring)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    d = model.detr_decoder
    with torch.no_grad():
        rp = d.reference_points.weight  # (cx, cy, w, h) before the sigmoid
        n = rp.shape[0]
        side = int(math.ceil(math.sqrt(n)))
        for q in range(n):
            cx, cy = (q % side + 0.5) / side, (q // side + 0.5) / side
            rp[q, 0] = math.log(cx / (1 - cx))
            rp[q, 1] = math.log(cy / (1 - cy))
        rp[:, 2:4] = math.log(0.25 / 0.75) + torch.randn(n, 2, generator=g) * 0.2
        d.query_embed.weight.copy_(torch.randn(d.query_embed.weight.shape, generator=g))
        # box relative-position bias: -k * (distance outside the box) for every head
        for mlp in (d.box_rpb_embed_x, d.box_rpb_embed_y):
            mlp.layer1.weight.mul_(0.1)
            mlp.layer1.bias.zero_()
            mlp.layer1.weight[0] = torch.tensor([-1.0, 0.0])  # relu(-(c - x1)): left of / above the box
            mlp.layer1.weight[1] = torch.tensor([0.0, 1.0])  # relu(c - x2): right of / below the box
            mlp.layer2.weight.mul_(0.1)
            mlp.layer2.weight[:, 0:2] = -4.0
            mlp.layer2.bias.zero_()


# --- data --------------------------------------------------------------------------------


class Tokens:
    """Token ids of every phrase of the world, padded to 32 as the processor does."""

    def __init__(self):
        import export_sam3

        tok = export_sam3.build_clip_tokenizer()
        self.phrases = world.vocabulary()
        enc = tok(self.phrases, padding="max_length", max_length=32, truncation=True, return_tensors="pt")
        self.ids = {p: (enc["input_ids"][i], enc["attention_mask"][i]) for i, p in enumerate(self.phrases)}

    def batch(self, prompts):
        import torch

        return (torch.stack([self.ids[p][0] for p in prompts]), torch.stack([self.ids[p][1] for p in prompts]))


def make_batch(step: int, images: int, prompts: int, seed: int = SEED, p_negative: float = 0.4,
               balanced_negatives: bool = False, uniform_positives: bool = False, wide: float = 0.0,
               hard_negatives: float = 0.0):
    """Scenes and prompts for a step, from seed (seed, step).  ``wide``: the share of
    images drawn from the wide world (shapes_world.sample_wide_scene; 0: the old world,
    drawn exactly as before)."""
    rng = np.random.default_rng([seed, step])
    if wide <= 0:
        scenes = [first_world_scene(rng) for _ in range(images)]
    else:
        n_wide = int(round(images * wide))
        scenes = [world.sample_wide_scene(rng, IMAGE_SIZE) if k < n_wide else first_world_scene(rng)
                  for k in range(images)]
    pairs = [(i, p) for i, s in enumerate(scenes)
             for p in world.sample_prompts(rng, s, prompts, p_negative, balanced_negatives,
                                           uniform_positives, hard_negatives)]
    return scenes, pairs


def pixel_values(scenes):
    import torch

    x = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float()
    return (x / 255.0 - 0.5) / 0.5


def forward(model, tokens: Tokens, scenes, pairs, aux: bool = False):
    """One vision pass per image, then every (image, prompt) pair through the decoder.
    Returns the model's output and, with ``aux``, the earlier decoder layers' outputs
    (for auxiliary losses; an empty list without)."""
    import torch
    from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

    vision = model.get_vision_features(pixel_values(scenes))
    index = torch.tensor([i for i, _ in pairs])
    rep = Sam3VisionEncoderOutput(
        fpn_hidden_states=tuple(h[index] for h in vision.fpn_hidden_states),
        fpn_position_encoding=tuple(p[index] for p in vision.fpn_position_encoding),
    )
    ids, mask = tokens.batch([p for _, p in pairs])
    if not aux:
        return model(vision_embeds=rep, input_ids=ids, attention_mask=mask), []
    seen = {}
    hooks = [model.dot_product_scoring.register_forward_hook(lambda m, a, o: seen.__setitem__("logits", o)),
             model.detr_decoder.register_forward_hook(lambda m, a, o: seen.__setitem__("decoder", o))]
    try:
        out = model(vision_embeds=rep, input_ids=ids, attention_mask=mask)
    finally:
        for h in hooks:
            h.remove()
    return out, aux_layers(model, seen["logits"], seen["decoder"])


def aux_layers(model, all_logits, dec):
    """Logits, boxes and presence of every decoder layer but the last, computed as
    ``Sam3Model.forward`` computes the last layer's (it returns only that one)."""
    from transformers.models.sam3.modeling_sam3 import box_cxcywh_to_xyxy, inverse_sigmoid

    offsets = model.detr_decoder.box_head(dec.intermediate_hidden_states)
    boxes = box_cxcywh_to_xyxy((inverse_sigmoid(dec.reference_boxes) + offsets).sigmoid())
    return [dict(logits=all_logits[i, ..., 0], boxes=boxes[i], presence=dec.presence_logits[i, :, 0])
            for i in range(all_logits.shape[0] - 1)]


# --- loss --------------------------------------------------------------------------------


def box_giou(a, b):
    """Generalised IoU of matching rows of two (N, 4) xyxy box tensors."""
    import torch

    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt, rb = torch.max(a[:, :2], b[:, :2]), torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=1e-6)
    lt2, rb2 = torch.min(a[:, :2], b[:, :2]), torch.max(a[:, 2:], b[:, 2:])
    hull = (rb2 - lt2).clamp(min=0).prod(1)
    return iou - (hull - union) / hull.clamp(min=1e-6)


def pairwise_giou(a, b):
    n, m = a.shape[0], b.shape[0]
    return box_giou(a[:, None].expand(n, m, 4).reshape(-1, 4), b[None].expand(n, m, 4).reshape(-1, 4)).view(n, m)


W = dict(cls=2.0, l1=5.0, giou=2.0, mask_bce=5.0, dice=5.0, presence=4.0)


def set_loss(out, scenes, pairs, aux=()):
    """The set loss of the final layer plus, for each earlier decoder layer in ``aux``,
    its own matching and class, box and presence losses (no masks: the mask decoder
    sees only the last layer)."""
    targets = set_targets(scenes, pairs)
    total, parts = layer_loss(out.pred_logits, out.pred_boxes, out.presence_logits[:, 0], targets, out.pred_masks)
    for i, layer in enumerate(aux):
        t, p = layer_loss(layer["logits"], layer["boxes"], layer["presence"], targets)
        total = total + t
        parts.update({f"aux{i}_{k}": v for k, v in p.items() if k in ("cls", "presence")})
    return total, parts


def set_targets(scenes, pairs):
    """Per (image, prompt) pair: None when the prompt names nothing present, else the
    matching objects' masks and their boxes (xyxy, in image-size units)."""
    import torch

    targets = []
    for i, phrase in pairs:
        scene = scenes[i]
        objs = scene.truth(phrase)
        if not objs:
            targets.append(None)
            continue
        boxes_px = scene.boxes()
        targets.append(([scene.masks[o] for o in objs],
                        torch.tensor([boxes_px[o] for o in objs], dtype=torch.float32) / IMAGE_SIZE))
    return targets


def layer_loss(logits, boxes, presence, targets, masks=None):
    import torch
    import torch.nn.functional as F
    from scipy.optimize import linear_sum_assignment

    n, q = logits.shape
    cls_target = torch.zeros_like(logits)
    pres_target = torch.zeros_like(presence)
    m_pred, m_gt, b_pred, b_gt = [], [], [], []
    with torch.no_grad():
        prob = logits.sigmoid()
    for k, target in enumerate(targets):
        if target is None:
            continue
        gt_masks, gt_boxes = target
        pres_target[k] = 1.0
        with torch.no_grad():
            cost = (-W["cls"] * prob[k][:, None] + W["l1"] * torch.cdist(boxes[k], gt_boxes, p=1)
                    - W["giou"] * pairwise_giou(boxes[k], gt_boxes))
        rows, cols = linear_sum_assignment(cost.numpy())
        for r, c in zip(rows, cols):
            cls_target[k, r] = 1.0
            m_pred.append((k, int(r)))
            m_gt.append(gt_masks[c])
            b_gt.append(gt_boxes[c])
        b_pred += [boxes[k, int(r)] for r in rows]
    losses = {
        "cls": F.binary_cross_entropy_with_logits(logits, cls_target),
        "presence": F.binary_cross_entropy_with_logits(presence, pres_target),
    }
    if m_pred:
        bp, bg = torch.stack(b_pred), torch.stack(b_gt)
        losses["l1"] = F.l1_loss(bp, bg)
        losses["giou"] = (1 - box_giou(bp, bg)).mean()
    if m_pred and masks is not None:
        sel = torch.stack([masks[k, r] for k, r in m_pred])[:, None]
        up = F.interpolate(sel, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)[:, 0]
        gt = torch.from_numpy(np.stack(m_gt)).float()
        losses["mask_bce"] = F.binary_cross_entropy_with_logits(up, gt)
        p = up.sigmoid().flatten(1)
        g = gt.flatten(1)
        losses["dice"] = (1 - (2 * (p * g).sum(1) + 1) / (p.sum(1) + g.sum(1) + 1)).mean()
    total = sum(W[k] * v for k, v in losses.items())
    return total, {k: v.item() for k, v in losses.items()}


# --- evaluation (PyTorch, for the training log; eval_toy.py measures the Rust pipeline) ---


def quick_eval(model, tokens, images: int = 48, threshold: float = 0.5, wide: float = 0.0):
    import torch
    import torch.nn.functional as F

    scenes, pairs = make_batch(10_000_000, images, 3, seed=SEED + 1, wide=wide)
    with torch.no_grad():
        out, _ = forward(model, tokens, scenes, pairs)
    score = out.pred_logits.sigmoid() * out.presence_logits.sigmoid()
    found, total, best_ious, neg, neg_fp, pres_ok = 0, 0, [], 0, 0, 0
    for k, (i, phrase) in enumerate(pairs):
        objs = scenes[i].truth(phrase)
        pres_ok += int((out.presence_logits[k, 0] > 0).item() == bool(objs))
        kept = (score[k] > threshold).nonzero()[:, 0]
        if not objs:
            neg += 1
            neg_fp += int(len(kept) > 0)
            continue
        up = F.interpolate(out.pred_masks[k][:, None], size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear")[:, 0] > 0
        for o in objs:
            gt = torch.from_numpy(scenes[i].masks[o])
            ious = [((up[r] & gt).sum() / (up[r] | gt).sum().clamp(min=1)).item() for r in range(up.shape[0])]
            best_ious.append(max(ious))
            total += 1
            found += int(any(ious[int(r)] >= 0.5 for r in kept))
    return dict(best_query_iou=float(np.mean(best_ious)), recall_kept=found / max(total, 1),
                no_match_fp=neg_fp / max(neg, 1), presence_acc=pres_ok / len(pairs))


# --- driver ------------------------------------------------------------------------------


def lr_at(step: int, total: int, peak: float, warmup: int = 400) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (0.03 + 0.97 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def build(work: str, init: str = ""):
    import torch
    from transformers import Sam3Model

    torch.manual_seed(SEED)
    config = toy_config()
    config._attn_implementation = "eager"
    model = Sam3Model(config)
    initialise(model, SEED)
    if init and not os.path.exists(os.path.join(work, "state.pt")):
        ref = Sam3Model.from_pretrained(init, attn_implementation="eager", dtype=torch.float32)
        model.load_state_dict(ref.state_dict())
        print(f"[train] weights from {init} (fine-tuning; fresh optimiser, step 0)", flush=True)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embed" in name or "norm" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.999))
    step = 0
    state_path = os.path.join(work, "state.pt")
    if os.path.exists(state_path):
        st = torch.load(state_path, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step = st["step"]
        print(f"[train] resumed from {state_path} at step {step}", flush=True)
    return model, opt, step


def save(work, model, opt, step):
    import torch

    tmp = os.path.join(work, "state.pt.tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, tmp)
    os.replace(tmp, os.path.join(work, "state.pt"))


def finish(work: str, model) -> str:
    """Round to float16 and save a float16 checkpoint: the exported float32 engines then
    hold exactly the weights the (small) reference checkpoint holds."""
    import torch
    from transformers import Sam3ImageProcessor

    out = os.path.join(work, "checkpoint")
    model = model.to(torch.float16)
    model.config.torch_dtype = "float16"
    model.save_pretrained(out)
    Sam3ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(out)
    print(f"[train] wrote {out}", flush=True)
    return out


def main(argv=None) -> int:
    global IMAGE_SIZE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=os.path.join(HERE, "work", "toy-train"))
    ap.add_argument("--steps", type=int, default=24000, help="total steps (the LR schedule spans them)")
    ap.add_argument("--images", type=int, default=16, help="images per step")
    ap.add_argument("--prompts", type=int, default=2, help="prompts per image")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--p-negative", type=float, default=0.4, help="share of prompts that name nothing present")
    ap.add_argument("--balanced-negatives", action="store_true",
                    help="draw each negative's form (colour + shape, shape, colour) uniformly first")
    ap.add_argument("--hard-negatives", type=float, default=0.0,
                    help="with this share (times --p-negative) a prompt is a confusable absent phrase "
                         "(shapes_world.confusable: colour and shape present apart, a near distractor colour)")
    ap.add_argument("--uniform-positives", action="store_true",
                    help="draw positive prompts' forms (colour + shape, shape, colour) equally")
    ap.add_argument("--aux-loss", action="store_true",
                    help="also match and supervise every earlier decoder layer (classes, boxes, presence)")
    ap.add_argument("--weights", default="", help="loss weights to override, e.g. presence=10,cls=5")
    ap.add_argument("--init", default="", help="start from this checkpoint's weights (fine-tuning; ignored on resume)")
    ap.add_argument("--wide", type=float, default=0.0,
                    help="share of each step's images from the wide world (shapes_world.sample_wide_scene)")
    ap.add_argument("--warmup", type=int, default=400)
    ap.add_argument("--image-size", type=int, default=IMAGE_SIZE,
                    help="the model's input (a multiple of 56: patch 14, window 4); fine-tuning a "
                         "checkpoint of another size keeps its weights (positions are tiled and rotary)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save-every", type=int, default=500)
    ap.add_argument("--eval-every", type=int, default=2000)
    ap.add_argument("--schedule-minutes", type=float, default=0,
                    help="LR schedule over this much wall time instead of --steps (the cosine follows the larger "
                         "of the step and time fractions; the run finishes when the time is up); for a run that "
                         "must end by a deadline on a shared machine whose speed is not known beforehand")
    ap.add_argument("--stop-at", type=int, default=0, help="save and stop after this step (0: run to --steps)")
    ap.add_argument("--deadline-minutes", type=float, default=0, help="save and stop after this long (0: never)")
    ap.add_argument("--finish", action="store_true", help="write WORK/checkpoint from the saved state and exit")
    args = ap.parse_args(argv)
    IMAGE_SIZE = args.image_size

    import torch

    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    model, opt, step = build(args.work, args.init)
    if args.finish:
        finish(args.work, model.eval())
        return 0
    for item in filter(None, args.weights.split(",")):
        k, v = item.split("=")
        if k not in W:
            ap.error(f"--weights: unknown loss {k!r} (known: {', '.join(W)})")
        W[k] = float(v)
    run = {"from_step": step, "images": args.images, "prompts": args.prompts, "p_negative": args.p_negative,
           "balanced_negatives": args.balanced_negatives, "uniform_positives": args.uniform_positives, "aux_loss": args.aux_loss,
           "hard_negatives": args.hard_negatives, "lr": args.lr, "steps": args.steps, "weights": dict(W),
           "init": args.init, "wide": args.wide, "warmup": args.warmup, "image_size": IMAGE_SIZE}
    print(f"[train] settings {run}", flush=True)
    with open(os.path.join(args.work, "settings.jsonl"), "a") as fh:
        fh.write(json.dumps(run) + "\n")
    tokens = Tokens()
    n = sum(p.numel() for p in model.parameters())
    print(f"[train] {n / 1e6:.2f} M parameters, steps {step}..{args.steps}", flush=True)
    start = time.time()
    log_path = os.path.join(args.work, "metrics.jsonl")
    model.train()
    ema = None
    while step < args.steps and not (args.stop_at and step >= args.stop_at):
        if args.schedule_minutes:
            frac = (time.time() - start) / (args.schedule_minutes * 60)
            if frac >= 1.0:
                print(f"[train] schedule time ({args.schedule_minutes} min) up at step {step}", flush=True)
                break
            eff = step if step < args.warmup else max(step, args.warmup + int(frac * (args.steps - args.warmup)))
        else:
            eff = step
        for g in opt.param_groups:
            g["lr"] = lr_at(eff, args.steps, args.lr, args.warmup)
        scenes, pairs = make_batch(step, args.images, args.prompts, p_negative=args.p_negative,
                                   balanced_negatives=args.balanced_negatives,
                                   uniform_positives=args.uniform_positives, wide=args.wide,
                                   hard_negatives=args.hard_negatives)
        out, aux = forward(model, tokens, scenes, pairs, aux=args.aux_loss)
        loss, parts = set_loss(out, scenes, pairs, aux)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        ema = float(loss) if ema is None else 0.98 * ema + 0.02 * float(loss)
        if step % 100 == 0:
            el = time.time() - start
            print(f"[train] step {step} loss {ema:.3f} " + " ".join(f"{k} {v:.3f}" for k, v in parts.items())
                  + f" lr {opt.param_groups[0]['lr']:.2e} {el / 60:.1f} min", flush=True)
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            m = quick_eval(model, tokens)
            if args.wide > 0:
                m.update({f"wide_{k}": v for k, v in quick_eval(model, tokens, wide=1.0).items()})
            model.train()
            print(f"[train] eval step {step}: {m}", flush=True)
            with open(log_path, "a") as fh:
                fh.write(json.dumps({"step": step, "loss": ema, **m}) + "\n")
        if step % args.save_every == 0 or step == args.steps:
            save(args.work, model, opt, step)
        if args.stop_at and step >= args.stop_at:
            save(args.work, model, opt, step)
            print(f"[train] stopped at step {step} (--stop-at)", flush=True)
            return 0
        if args.deadline_minutes and time.time() - start > args.deadline_minutes * 60:
            save(args.work, model, opt, step)
            print(f"[train] deadline reached at step {step}; rerun to continue", flush=True)
            return 0
    if args.schedule_minutes and step < args.steps:
        save(args.work, model, opt, step)
        print(f"[train] done: {step} steps in {(time.time() - start) / 60:.1f} min (--schedule-minutes)", flush=True)
        finish(args.work, model.eval())
        return 0
    if step < args.steps:  # resumed at or past --stop-at: nothing to do in this phase
        print(f"[train] at step {step}, past --stop-at {args.stop_at}: nothing to do", flush=True)
        return 0
    print(f"[train] done: {step} steps", flush=True)
    finish(args.work, model.eval())
    return 0


if __name__ == "__main__":
    sys.exit(main())
