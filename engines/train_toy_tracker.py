#!/usr/bin/env python3
"""Train the toy SAM 3 video tracker on shapes-world clips (issue 28, item 5; CPU,
seeded, resumable).

    .venv/bin/python engines/train_toy_tracker.py --work engines/work/toy-tracker --steps 3000
    .venv/bin/python engines/train_toy_tracker.py --work engines/work/toy-tracker --finish

The model is a transformers ``Sam3VideoModel``: its detector is the trained toy
``Sam3Model`` of tests/fixtures/toy-shapes-sam3/reference (frozen, the same
weights, 168 px), its tracker is small and trained here: the tracker neck (on
the detector's ViT output), memory attention (2 layers), memory encoder, SAM
mask decoder and object-pointer heads, all 64 wide.  64, not wider: the
tracker neck is built from the detector's vision config
(``Sam3VideoModel.tracker_neck = Sam3VisionNeck(detector_config.vision_config)``),
so its width is the toy detector's FPN width.  Memories are 64 wide too
(``kv_in_dim=64`` is fixed in transformers), so each object pointer is one
token, not hidden/64: transformers' own streaming code fails there (a
``torch.cat`` of 4-D pointers with 3-D memories, docs/video-tracker.md), the
engines (export_sam3_tracker.wrappers) and the ONNX loop (reference_video.py)
do not; the wrappers are what this script trains through.

Training is SAM 2's: per clip and object the first frame's true mask is
the object's conditioning input (``tracker_mask_prompt``, as a new detection
is in the loop), then every later frame is propagated with the engines' own
modules (``tracker_memory_attention`` over the conditioning memory, the last
``num_maskmem - 1`` frames' memories and the object pointers, then the mask
decoder), and the frame's predicted mask is memory-encoded as the loop does
(object score +-10 by whether the mask is empty, sigmoid of the low-res
logits; in a share of the clips, ``--teacher-forcing``, from the true mask).
Loss per tracked frame (``losses``): 20 x BCE + dice of each of the decoder's
three masks against the truth (up-sampled to 168 px, where the object is
visible), L1 of the predicted IoUs against the masks' real IoUs, and BCE of the
object-score logit against "the object is visible" with the visible and the
hidden object-frames weighing half each; frames after a hide weigh
``--reacq-weight`` times as much.

Clips (``train_clip``), three kinds over a textured background, 2-4 shapes, no
two alike in colour and shape: "occlude" (straight-line motion; one shape
passes wholly behind a larger one drawn over it), "return" (one or two shapes
vanish for 1-4 frames and come back elsewhere, moving another way) and
"teleport" (every shape at a new random place every frame, now and then not
drawn).  The last two can only be solved by finding the object again by its
look.  The first ``--smooth-steps`` steps use "occlude" clips only, then the
``--clip-mix`` (a curriculum: with the jumps from the start every run settled
on one all-shapes mask that ignored the memory; engines/README.md).  Every
shape with >= 60 px on frame 0 is an object to track (at most ``--objects``).

Every ``--save-every`` steps the state goes to WORK/state.pt; a rerun with the
same WORK resumes (the batch of step k comes from seed (SEED, k)).
``--deadline-minutes`` saves and stops.  ``--finish`` writes the model, every
weight rounded to a float16 value, as a transformers checkpoint in
WORK/checkpoint (what make_toy_video_fixture reads).
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
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import shapes_world as world  # noqa: E402

SEED = 11
DETECTOR = os.path.join(ROOT, "tests", "fixtures", "toy-shapes-sam3", "reference")
VISIBLE_PX = 6  # a shape with fewer visible pixels (at 168 px) counts as not there
REACQ_WEIGHT = 2.0  # loss weight of the frames after an object was hidden (see losses; --reacq-weight)
OBJ_WEIGHT = 1.0  # weight of the object-score BCE (--obj-weight)
# the clip kinds' shares (train_clip; --clip-mix): the re-find clips ("return", "teleport") make
# finding an object again by its look the dense part of the loss, not one object in six
CLIP_MIX = {"occlude": 0.5, "return": 0.35, "teleport": 0.15}
TEACHER_FORCING = 0.3  # share of clips whose tracked frames' memories are encoded from the truth (--teacher-forcing)
NECK_LR = 1.0  # the tracker neck's LR as a share of --lr (--neck-lr)
# a curriculum: the first SMOOTH_STEPS steps train on "occlude" clips only (smooth motion, where
# following the memory pays), then CLIP_MIX.  With the re-find clips from the start, three runs
# settled within 200 steps on one mask for every object (all the shapes, logits just below 0)
# and an object score that ignored its input: jumps made the memory look useless before it
# had been learned (engines/README.md, "The toy tracker")
SMOOTH_STEPS = 250
NECK_INIT_SCALE = 1 / 16  # the detector neck's last convs scaled by this to start the tracker neck (build_model)


# ----------------------------------------------------------------------------- model


def video_config(detector_dir: str = DETECTOR):
    from transformers import Sam3Config, Sam3VideoConfig

    det = Sam3Config.from_pretrained(detector_dir)
    det.dtype = "float32"
    c = det.vision_config.fpn_hidden_size
    size = det.vision_config.backbone_config.image_size
    tracker = dict(
        vision_config=det.vision_config.to_dict(),
        prompt_encoder_config=dict(hidden_size=c, mask_input_channels=16, image_size=size),
        mask_decoder_config=dict(hidden_size=c, mlp_dim=256, num_attention_heads=4, iou_head_hidden_dim=64),
        memory_attention_hidden_size=c, memory_attention_num_layers=2, memory_attention_feed_forward_hidden_size=256,
        memory_encoder_hidden_size=c, memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=c, memory_fuser_embed_dim=c, memory_fuser_intermediate_dim=256,
        image_size=size,
    )
    return Sam3VideoConfig(detector_config=det.to_dict(), tracker_config=tracker,
                           low_res_mask_size=4 * size // det.vision_config.backbone_config.patch_size)


def build_model(detector_dir: str = DETECTOR, neck_init: bool = False):
    import torch
    from transformers import Sam3Model, Sam3VideoModel

    config = video_config(detector_dir)
    config._attn_implementation = "eager"
    vm = Sam3VideoModel(config)
    det = Sam3Model.from_pretrained(detector_dir, dtype=torch.float32)
    vm.detector_model.load_state_dict(det.state_dict())
    for p in vm.detector_model.parameters():
        p.requires_grad_(False)
    vm.detector_model.eval()
    if not neck_init:
        return vm
    # --neck-init: the tracker neck starts as the detector's (same module, same width): its features
    # already tell the world's colours and shapes apart, which finding an object again by
    # its look needs (the first recorded run trained it from scratch)
    vm.tracker_neck.load_state_dict(vm.detector_model.vision_encoder.neck.state_dict())
    # ... scaled down: the detector's level-2 features have std ~1.9 where a fresh neck's
    # have ~0.1.  Neither as they are nor scaled did it train here: both runs lost every mask
    # within 200 steps (engines/README.md, "The toy tracker"); off by default.
    with torch.no_grad():
        for layer in vm.tracker_neck.fpn_layers:
            layer.proj2.weight.mul_(NECK_INIT_SCALE)
            layer.proj2.bias.mul_(NECK_INIT_SCALE)
    return vm


def trainable(vm):
    return list(vm.tracker_model.parameters()) + list(vm.tracker_neck.parameters())


# ----------------------------------------------------------------------------- data


def _distinct_shapes(rng: np.random.Generator, n: int, r_min: float, r_max: float):
    """n random shapes, no two with the same colour AND shape (a twin would make "which one
    is the object" a coin toss once positions stop telling)."""
    out = []
    while len(out) < n:
        s = world.random_shape(rng, r_min, r_max)
        if all((s.color, s.shape) != (o.color, o.shape) for o in out):
            out.append(s)
    return out


def _render_clip(rng, bg, states, order, size):
    """states[f][k]: the shape k as drawn on frame f, or None (not drawn); drawn in ``order``
    (later on top).  Returns images [F, S, S, 3] and visible masks [K, F, S, S]."""
    frames, n = len(states), len(states[0])
    imgs = []
    masks = np.zeros((n, frames, size, size), bool)
    for f in range(frames):
        drawn = [k for k in order if states[f][k] is not None]
        scene = world.render(rng, [states[f][k] for k in drawn], size, bg=bg)
        imgs.append(scene.image)
        for j, k in enumerate(drawn):
            masks[k, f] = scene.masks[j]
    return np.stack(imgs), masks


def _moved(s, cx, cy, angle=None):
    return world.Shape(**{**s.__dict__, "cx": cx, "cy": cy, "angle": s.angle if angle is None else angle})


def occlude_clip(rng, frames, size):
    """Straight-line motion; shape 0 passes wholly behind a larger square or circle drawn
    over it around a random frame and comes out on the other side (the recorded run's clip)."""
    bg = world.background(rng, size)
    n = int(rng.integers(2, 5))
    shapes = _distinct_shapes(rng, n, 0.08, 0.17)
    vel = []
    for _ in range(n):
        speed, a = rng.uniform(0.0, 0.05), rng.uniform(0, 2 * math.pi)
        vel.append((speed * math.cos(a), speed * math.sin(a)))
    occ = world.random_shape(rng, 0.22, 0.30)
    occ.shape = ["square", "circle"][int(rng.integers(2))]
    tgt = shapes[0]
    tgt.r = float(rng.uniform(0.07, 0.12))
    speed, a = rng.uniform(0.035, 0.09), rng.uniform(0, 2 * math.pi)
    v = (speed * math.cos(a), speed * math.sin(a))
    t_mid = rng.uniform(2.0, frames - 3.5)
    occ.cx, occ.cy = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
    ov = (rng.uniform(-0.008, 0.008), rng.uniform(-0.008, 0.008))
    tgt.cx = occ.cx - t_mid * (v[0] - ov[0])
    tgt.cy = occ.cy - t_mid * (v[1] - ov[1])
    vel[0] = v
    shapes.insert(1, occ)
    vel.insert(1, ov)
    order = list(rng.permutation(len(shapes)))
    i0, i1 = order.index(0), order.index(1)
    if i1 < i0:  # the occluder above the target
        order[i0], order[i1] = order[i1], order[i0]
    states = [[_moved(s, s.cx + f * vel[k][0], s.cy + f * vel[k][1]) for k, s in enumerate(shapes)]
              for f in range(frames)]
    return _render_clip(rng, bg, states, order, size)


def return_clip(rng, frames, size):
    """Straight-line motion; one or two shapes vanish (not drawn) for 1-4 frames and come
    back somewhere else, moving another way: where it was tells nothing, what it looks
    like (the conditioning frame's memory, the object pointers) finds it."""
    bg = world.background(rng, size)
    n = int(rng.integers(2, 5))
    shapes = _distinct_shapes(rng, n, 0.08, 0.17)
    for s in shapes:
        s.cx, s.cy = rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.85)
    vel = []
    for _ in range(n):
        speed, a = rng.uniform(0.0, 0.05), rng.uniform(0, 2 * math.pi)
        vel.append([speed * math.cos(a), speed * math.sin(a)])
    pos = [[s.cx, s.cy] for s in shapes]
    hide = {}
    for k in range(min(n, 1 + int(rng.uniform() < 0.4))):
        t0 = int(rng.integers(1, frames - 1))
        length = int(rng.integers(1, 5))
        hide[k] = (t0, min(t0 + length, frames - 1))  # hidden on [t0, t1), back on t1
    states = []
    for f in range(frames):
        row = []
        for k, s in enumerate(shapes):
            if f:
                pos[k][0] += vel[k][0]
                pos[k][1] += vel[k][1]
            if k in hide and f == hide[k][1]:  # back, somewhere at least 0.25 away
                for _ in range(20):
                    nx, ny = rng.uniform(0.12, 0.88), rng.uniform(0.12, 0.88)
                    if math.hypot(nx - pos[k][0], ny - pos[k][1]) > 0.25:
                        break
                pos[k] = [nx, ny]
                speed, a = rng.uniform(0.0, 0.05), rng.uniform(0, 2 * math.pi)
                vel[k] = [speed * math.cos(a), speed * math.sin(a)]
            hidden = k in hide and hide[k][0] <= f < hide[k][1]
            row.append(None if hidden else _moved(s, pos[k][0], pos[k][1]))
        states.append(row)
    return _render_clip(rng, bg, states, list(rng.permutation(n)), size)


def teleport_clip(rng, frames, size):
    """Every shape at a new random place (and angle) on every frame, now and then not drawn
    at all: following by position is useless, only appearance finds the object."""
    bg = world.background(rng, size)
    n = int(rng.integers(2, 5))
    shapes = _distinct_shapes(rng, n, 0.08, 0.16)
    states = []
    for f in range(frames):
        row = []
        for s in shapes:
            gone = f > 0 and rng.uniform() < 0.2
            row.append(None if gone else _moved(s, rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9),
                                                s.angle + rng.uniform(-0.5, 0.5)))
        states.append(row)
    return _render_clip(rng, bg, states, list(rng.permutation(n)), size)


CLIP_KINDS = {"occlude": occlude_clip, "return": return_clip, "teleport": teleport_clip}


def train_clip(rng: np.random.Generator, frames: int, size: int, max_objects: int):
    """One clip: frames [F, S, S, 3] uint8 and, per object to track, its visible mask per
    frame [K, F, S, S] bool.  The kind is drawn by CLIP_MIX (see the three makers above);
    every shape with >= 60 px on frame 0 is an object (at most max_objects, shape 0 first)."""
    kinds = list(CLIP_MIX)
    p = np.array([CLIP_MIX[k] for k in kinds], dtype=np.float64)
    kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
    imgs, masks = CLIP_KINDS[kind](rng, frames, size)
    keep = [k for k in range(masks.shape[0]) if masks[k, 0].sum() >= 60][:max_objects]
    return imgs, masks[keep]


def make_batch(step: int, clips: int, frames: int, size: int, max_objects: int, seed: int = SEED):
    rng = np.random.default_rng([seed, step])
    out = []
    while len(out) < clips:
        imgs, masks = train_clip(rng, frames, size, max_objects)
        if masks.shape[0]:
            out.append((imgs, masks))
    return out


def pixel_values(imgs: np.ndarray):
    import torch

    return torch.from_numpy(((imgs / 255.0 - 0.5) / 0.5).astype(np.float32)).permute(0, 3, 1, 2).contiguous()


def area_down(masks: np.ndarray, m: int) -> np.ndarray:
    """[..., S, S] bool -> [..., m, m] 0/1 float: the share of each low-res cell covered > 0.5."""
    import torch

    t = torch.from_numpy(masks.astype(np.float32))
    lead = t.shape[:-2]
    a = torch.nn.functional.adaptive_avg_pool2d(t.reshape(-1, 1, *t.shape[-2:]), m).reshape(*lead, m, m)
    return (a > 0.5).float().numpy()


# ----------------------------------------------------------------------------- the rollout


class Tracker:
    """The tracker engines' torch modules (export_sam3_tracker.wrappers), plus the mask
    decoder with all three masks and their IoU predictions for the loss."""

    def __init__(self, vm):
        import export_sam3_tracker as est

        self.vm = vm
        self.ws = est.wrappers(vm)
        self.trk = vm.tracker_model
        t = self.trk
        self.h = t.prompt_encoder.image_embedding_size[0]
        self.M = t.prompt_encoder.mask_input_size[0]
        self.S = t.image_size
        self.num_maskmem = t.num_maskmem
        self.max_ptrs = t.config.max_object_pointers_in_encoder

    def features(self, pv):
        """Frozen ViT, trained tracker neck: tracker levels 0-2 and the level-2 position."""
        import torch

        det = self.vm.detector_model
        with torch.no_grad():
            hs = det.vision_encoder.backbone(pv).last_hidden_state
        b = hs.shape[0]
        spatial = hs.reshape(b, self.h, self.h, -1).permute(0, 3, 1, 2)
        tf, tp = self.vm.tracker_neck(spatial)
        md = self.trk.mask_decoder
        return md.conv_s0(tf[0]), md.conv_s1(tf[1]), tf[2], tp[2]

    def decode_all(self, image_embed, feat0, feat1):
        """The wrappers' decode without the selection: masks [N, 3, M, M], iou [N, 3],
        object pointers of the three [N, 3, C], object score logit [N, 1]."""
        import torch

        trk = self.trk
        n = image_embed.shape[0]
        dense = trk.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(n, -1, self.h, self.h)
        pe = trk.get_image_wide_positional_embeddings().repeat(n, 1, 1, 1)
        points = torch.zeros(n, 1, 1, 2, dtype=image_embed.dtype)
        labels = -torch.ones(n, 1, 1, dtype=torch.int32)
        sparse, _ = trk.prompt_encoder(input_points=points, input_labels=labels, input_boxes=None, input_masks=None)
        masks, iou, tokens, obj = trk.mask_decoder(
            image_embeddings=image_embed, image_positional_embeddings=pe, sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=True,
            high_resolution_features=[feat0.expand(n, -1, -1, -1), feat1.expand(n, -1, -1, -1)])
        return masks[:, 0], iou[:, 0], tokens[:, 0], obj.reshape(n, 1)

    def rollout(self, feats, gt_low, visible, teacher: bool = False):
        """One clip, K objects: frame 0 from the truth (conditioning), frames 1.. tracked.
        feats: per frame (f0, f1, f2, p2), each [1, ...]; gt_low [K, F, M, M] 0/1 tensor.
        ``teacher``: each tracked frame's memory is encoded from the true mask (as logits
        +-10, object score +-10 by visibility) instead of the prediction, so that early in
        training the memories already say where the object was.
        Returns per tracked frame (masks3, iou3, obj) for the loss."""
        import torch

        ws = self.ws
        F_ = len(feats)
        f0, f1, f2, p2 = feats[0]
        low, high, ptr, score = ws["tracker_mask_prompt"](gt_low[:, 0:1], f0, f1, f2)
        mem0 = ws["tracker_memory_encoder"](f2, high, score, torch.ones(1))
        k = gt_low.shape[0]
        cond = (mem0, ptr)  # frame 0
        past = {}  # frame -> (memory [K, mem, h, w], pointer [K, C])
        outs = []
        for f in range(1, F_):
            f0, f1, f2, p2 = feats[f]
            mems, moff = [cond[0]], [0]
            for off in range(self.num_maskmem - 1, 0, -1):
                if f - off >= 1:
                    mems.append(past[f - off][0])
                    moff.append(off)
            ptrs, poff = [cond[1]], [float(f)]
            for d in range(1, self.max_ptrs):
                if f - d < 1:
                    break
                ptrs.append(past[f - d][1])
                poff.append(float(d))
            memory = torch.stack(mems, 1)
            pointers = torch.stack(ptrs, 1)
            cf = ws["tracker_memory_attention"](
                f2, p2, memory, torch.tensor([moff] * k, dtype=torch.int64), pointers,
                torch.tensor([poff] * k, dtype=torch.float32))
            masks3, iou3, tokens3, obj = self.decode_all(cf, f0, f1)
            outs.append((masks3, iou3, obj))
            # the loop's output: best predicted IoU, NO_OBJ where the object score is <= 0
            best = iou3.argmax(dim=1)
            sel = masks3[torch.arange(k), best]  # [K, M, M]
            appearing = (obj > 0).float()  # [K, 1]
            sel = torch.where(appearing.reshape(k, 1, 1) > 0, sel, torch.full_like(sel, -1024.0))
            token = tokens3[torch.arange(k), best]
            p = self.trk.object_pointer_proj(token)
            p = appearing * p + (1 - appearing) * self.trk.no_object_pointer
            # memory as the loop encodes it: score +-10 by emptiness, sigmoid of the low-res logits
            m_in = sel.detach()
            if teacher:
                m_in = torch.where(visible[:, f].reshape(k, 1, 1), gt_low[:, f] * 20.0 - 10.0,
                                   torch.full_like(m_in, -1024.0))
            area = torch.where((m_in > 0).flatten(1).any(1, keepdim=True), 10.0, -10.0)
            mem = ws["tracker_memory_encoder"](f2, m_in[:, None], area, torch.zeros(1))
            past[f] = (mem, p)
        return outs


def losses(outs, gt_hi, visible, S):
    """outs per tracked frame (frames 1..); gt_hi [K, F, S, S] float; visible [K, F] bool.

    Object score: BCE against "visible", the visible and the hidden object-frames
    weighing half each (hidden ones are the rarer class: unweighted, the head learned to
    say "there" always).  Masks where visible: 20 x BCE + dice on each of the three masks
    (where hidden the loop blanks the mask by the object score).  Frames after a hide weigh
    REACQ_WEIGHT times as much."""
    import torch
    import torch.nn.functional as F

    tot = {"mask": 0.0, "dice": 0.0, "iou": 0.0, "obj": 0.0}
    nm = 0
    obj_logit, obj_vis, obj_w = [], [], []
    for i, (masks3, iou3, obj) in enumerate(outs):
        f = i + 1
        vis = visible[:, f]
        # frames after the object was hidden: re-acquisition, what the overlap tracker cannot do
        w = 1.0 + (REACQ_WEIGHT - 1.0) * (vis & ~visible[:, 1:f + 1].all(dim=1)).float()  # [K]
        obj_logit.append(obj[:, 0])
        obj_vis.append(vis.float())
        obj_w.append(w)
        if vis.any():
            mv = F.interpolate(masks3[vis], size=(S, S), mode="bilinear", align_corners=False)  # [V, 3, S, S]
            gv = gt_hi[vis, f][:, None].expand_as(mv)
            bce = F.binary_cross_entropy_with_logits(mv, gv, reduction="none").mean(dim=(2, 3))  # [V, 3]
            tot["mask"] = tot["mask"] + (w[vis] * (20 * bce).mean(dim=1)).sum()
            nm += int(vis.sum())
            p = torch.sigmoid(mv)
            dice = 1 - (2 * (p * gv).sum(dim=(2, 3)) + 1) / (p.sum(dim=(2, 3)) + gv.sum(dim=(2, 3)) + 1)
            # on EVERY one of the three masks, not only the best (SAM 2): with no prompt there is
            # nothing ambiguous to choose between, and the loop picks by the predicted IoU, which
            # lags (trained on the best mask only, the step-200 check of the first recorded run
            # picked its worst mask every time)
            tot["dice"] = tot["dice"] + (w[vis] * dice.mean(dim=1)).sum()
            with torch.no_grad():
                hard = (mv > 0).float()
                inter = (hard * gv).sum(dim=(2, 3))
                union = hard.sum(dim=(2, 3)) + gv.sum(dim=(2, 3)) - inter
                real = inter / union.clamp(min=1)
            tot["iou"] = tot["iou"] + (iou3[vis] - real).abs().sum()  # SAM 2: L1 on every mask's IoU
    logit, y, w = torch.cat(obj_logit), torch.cat(obj_vis), torch.cat(obj_w)
    ce = w * F.binary_cross_entropy_with_logits(logit, y, reduction="none")
    pos, neg = y > 0.5, y < 0.5
    obj_loss = 0.0
    for sel in (pos, neg):
        if sel.any():
            obj_loss = obj_loss + 0.5 * ce[sel].mean()
    out = {"obj": OBJ_WEIGHT * obj_loss}
    out["mask"] = tot["mask"] / max(nm, 1)
    nv = max(int(visible[:, 1:].sum()), 1)
    out["dice"] = tot["dice"] / nv
    out["iou"] = tot["iou"] / nv
    return out


def batch_loss(tr: Tracker, batch, S: int, step: int = 0):
    import torch

    teacher = np.random.default_rng([SEED, step, 7])

    pv = pixel_values(np.concatenate([imgs for imgs, _ in batch]))
    f0, f1, f2, p2 = tr.features(pv)
    total = {}
    i = 0
    for imgs, masks in batch:
        F_ = imgs.shape[0]
        feats = [(f0[i + f:i + f + 1], f1[i + f:i + f + 1], f2[i + f:i + f + 1], p2[i + f:i + f + 1]) for f in range(F_)]
        i += F_
        gt_low = torch.from_numpy(area_down(masks, tr.M))
        gt_hi = torch.from_numpy(masks.astype(np.float32))
        visible = torch.from_numpy(masks.sum(axis=(2, 3)) >= VISIBLE_PX)
        outs = tr.rollout(feats, gt_low, visible, teacher=bool(teacher.uniform() < TEACHER_FORCING))
        for k, v in losses(outs, gt_hi, visible, S).items():
            total[k] = total.get(k, 0.0) + v / len(batch)
    return total


# ----------------------------------------------------------------------------- evaluation


def _loop_masks(outs, size):
    """The loop's choice per tracked frame: the mask with the best predicted IoU, empty
    where the object score is <= 0; [T, K, S, S] bool, and the object logits [T, K]."""
    import torch

    preds, objs = [], []
    for masks3, iou3, obj in outs:
        best = iou3.argmax(dim=1)
        sel = masks3[torch.arange(masks3.shape[0]), best][:, None]
        hi = torch.nn.functional.interpolate(sel, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
        preds.append(((hi > 0) & (obj > 0)[:, :, None]).numpy())
        objs.append(obj[:, 0].numpy())
    return np.stack(preds), np.stack(objs)


def _iou(a, b) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def quick_eval(tr: Tracker, clips: int, frames: int, size: int, max_objects: int, seed: int = SEED + 1000):
    """Held-out clips, the loop's selection rule: mean IoU where visible, object-score
    accuracy (all object-frames, and the hidden ones alone), the IoU on the first visible
    frame after a hidden one (``reacq_iou``: re-acquisition) and the best of that frame's
    and the next one's (``reacq2_iou``: "back within a frame")."""
    import torch

    ious, acc, acc_hidden, reacq, reacq2 = [], [], [], [], []
    with torch.no_grad():
        for c in range(clips):
            (imgs, masks), = make_batch(c, 1, frames, size, max_objects, seed)
            pv = pixel_values(imgs)
            f0, f1, f2, p2 = tr.features(pv)
            feats = [(f0[f:f + 1], f1[f:f + 1], f2[f:f + 1], p2[f:f + 1]) for f in range(frames)]
            gt_low = torch.from_numpy(area_down(masks, tr.M))
            visible = masks.sum(axis=(2, 3)) >= VISIBLE_PX
            pred, obj = _loop_masks(tr.rollout(feats, gt_low, torch.from_numpy(visible)), size)
            for f in range(1, frames):
                for k in range(masks.shape[0]):
                    acc.append(bool(obj[f - 1, k] > 0) == bool(visible[k, f]))
                    if not visible[k, f]:
                        acc_hidden.append(bool(obj[f - 1, k] <= 0))
                        continue
                    iou = _iou(pred[f - 1, k], masks[k, f])
                    ious.append(iou)
                    if not visible[k, f - 1]:
                        reacq.append(iou)
                        nxt = _iou(pred[f, k], masks[k, f + 1]) if f + 1 < frames and visible[k, f + 1] else 0.0
                        reacq2.append(max(iou, nxt))
    nan = float("nan")
    return {"miou": float(np.mean(ious)), "obj_acc": float(np.mean(acc)),
            "obj_acc_hidden": float(np.mean(acc_hidden)) if acc_hidden else nan,
            "reacq_iou": float(np.mean(reacq)) if reacq else nan,
            "reacq2_iou": float(np.mean(reacq2)) if reacq2 else nan, "reacq_n": len(reacq)}


def occlusion_probe(tr: Tracker, size: int):
    """The demonstration clip (shapes_world.occlusion_clip) in PyTorch, as a progress
    probe only (never trained on): the red circle's true mask on frame 1 as the
    conditioning frame (the loop creates the object from frame 1's detection), frames 2..
    tracked; per frame the IoU of the loop's choice with the truth."""
    import torch

    frames = list(world.occlusion_clip(size))
    imgs = np.stack([sc.image for _, sc in frames[1:]])
    truth = np.stack([next(m for s, m in zip(sc.shapes, sc.masks) if s.ident == 1) for _, sc in frames[1:]])[None]
    with torch.no_grad():
        f0, f1, f2, p2 = tr.features(pixel_values(imgs))
        feats = [(f0[f:f + 1], f1[f:f + 1], f2[f:f + 1], p2[f:f + 1]) for f in range(imgs.shape[0])]
        visible = truth.sum(axis=(2, 3)) >= VISIBLE_PX
        pred, _ = _loop_masks(tr.rollout(feats, torch.from_numpy(area_down(truth, tr.M)),
                                         torch.from_numpy(visible)), size)
    return [round(_iou(pred[f - 1, 0], truth[0, f]), 2) for f in range(1, imgs.shape[0])]


# ----------------------------------------------------------------------------- driver


def lr_at(step: int, total: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def save(work: str, vm, opt, step: int) -> None:
    import torch

    state = {"tracker": vm.tracker_model.state_dict(), "neck": vm.tracker_neck.state_dict(),
             "opt": opt.state_dict(), "step": step}
    torch.save(state, os.path.join(work, "state.tmp"))
    os.replace(os.path.join(work, "state.tmp"), os.path.join(work, "state.pt"))


def finish(work: str, vm) -> str:
    """Every weight rounded to float16 (kept float32 in the engines), saved as a float16
    transformers checkpoint: what the fixture maker exports."""
    import torch

    with torch.no_grad():
        for p in vm.parameters():
            p.copy_(p.half().float())
    out = os.path.join(work, "checkpoint")
    vm.half().save_pretrained(out)
    vm.float()
    import shutil

    shutil.copy(os.path.join(DETECTOR, "preprocessor_config.json"), out)  # the toy detector's 168 px
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=os.path.join(HERE, "work", "toy-tracker"))
    ap.add_argument("--steps", type=int, default=3000, help="the cosine schedule's length")
    ap.add_argument("--clips", type=int, default=4, help="clips per step")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--objects", type=int, default=3, help="objects tracked per clip (at most)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: on a shared 2-core machine 2 threads thrash)")
    ap.add_argument("--schedule-minutes", type=float, default=0.0,
                    help="the cosine LR follows wall time where it is further along than the step count; stop when done")
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-clips", type=int, default=24)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--deadline-minutes", type=float, default=0.0, help="save and stop after this long")
    ap.add_argument("--finish", action="store_true", help="write WORK/checkpoint and stop")
    ap.add_argument("--init", default="", help="a state.pt to start a new WORK from (its weights, a fresh optimiser)")
    ap.add_argument("--reacq-weight", type=float, default=REACQ_WEIGHT)
    ap.add_argument("--obj-weight", type=float, default=OBJ_WEIGHT)
    ap.add_argument("--clip-mix", default=",".join(f"{k}={v}" for k, v in CLIP_MIX.items()),
                    help="shares of the clip kinds, e.g. occlude=0.3,return=0.4,teleport=0.3")
    ap.add_argument("--teacher-forcing", type=float, default=TEACHER_FORCING)
    ap.add_argument("--smooth-steps", type=int, default=SMOOTH_STEPS,
                    help="the first steps' clips are all 'occlude' (smooth motion), then --clip-mix")
    ap.add_argument("--neck-lr", type=float, default=NECK_LR, help="the tracker neck's LR as a share of --lr")
    ap.add_argument("--neck-init", action="store_true", help="start the tracker neck as the detector's (scaled)")
    args = ap.parse_args(argv)

    import torch

    mix = {k: float(v) for k, v in (kv.split("=") for kv in args.clip_mix.split(","))}
    if set(mix) - set(CLIP_KINDS):
        ap.error(f"--clip-mix: unknown kinds {sorted(set(mix) - set(CLIP_KINDS))}")
    globals().update(REACQ_WEIGHT=args.reacq_weight, OBJ_WEIGHT=args.obj_weight, CLIP_MIX=mix,
                     TEACHER_FORCING=args.teacher_forcing)
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    os.makedirs(args.work, exist_ok=True)
    vm = build_model(neck_init=args.neck_init)
    size = vm.tracker_model.image_size
    opt = torch.optim.AdamW([{"params": list(vm.tracker_model.parameters()), "lr_share": 1.0},
                             {"params": list(vm.tracker_neck.parameters()), "lr_share": args.neck_lr}],
                            lr=args.lr, weight_decay=args.weight_decay)
    step = 0
    sp = os.path.join(args.work, "state.pt")
    if os.path.exists(sp):
        st = torch.load(sp, weights_only=False)
        vm.tracker_model.load_state_dict(st["tracker"])
        vm.tracker_neck.load_state_dict(st["neck"])
        opt.load_state_dict(st["opt"])
        step = st["step"]
        print(f"[toy-tracker] resumed at step {step}", flush=True)
    elif args.init:
        st = torch.load(args.init, weights_only=False)
        vm.tracker_model.load_state_dict(st["tracker"])
        vm.tracker_neck.load_state_dict(st["neck"])
        print(f"[toy-tracker] weights from {args.init} (its step {st['step']}), fresh optimiser", flush=True)
    if args.finish:
        out = finish(args.work, vm)
        print(f"[toy-tracker] checkpoint: {out}", flush=True)
        return 0
    with open(os.path.join(args.work, "settings.jsonl"), "a") as f:
        f.write(json.dumps({**vars(args), "first_step": step, "time": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
    tr = Tracker(vm)
    vm.tracker_model.train()
    vm.tracker_neck.train()
    t0 = time.time()
    first = step
    run = {}
    while step < args.steps:
        sched = step
        if args.schedule_minutes:
            # resumed runs: wall time counts from this run's start, on top of the step it resumed at
            sched = max(step, first + int((time.time() - t0) / (args.schedule_minutes * 60) * (args.steps - first)))
            if sched >= args.steps:
                save(args.work, vm, opt, step)
                print(f"[toy-tracker] schedule done at step {step}", flush=True)
                break
        for g in opt.param_groups:
            g["lr"] = lr_at(sched, args.steps, args.lr) * g.get("lr_share", 1.0)
        globals()["CLIP_MIX"] = {"occlude": 1.0} if step < args.smooth_steps else mix
        batch = make_batch(step, args.clips, args.frames, size, args.objects)
        parts = batch_loss(tr, batch, size, step)
        loss = sum(parts.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable(vm), 1.0)
        opt.step()
        step += 1
        for k, v in parts.items():
            run[k] = run.get(k, 0.0) + float(v.detach())
        run["n"] = run.get("n", 0) + 1
        if step % args.log_every == 0:
            n = run.pop("n")
            print(f"[toy-tracker] step {step} loss {sum(run.values()) / n:.4f} "
                  + " ".join(f"{k} {v / n:.4f}" for k, v in run.items())
                  + f" lr {opt.param_groups[0]['lr']:.2e} {time.time() - t0:.0f}s", flush=True)
            run = {}
        if step % args.save_every == 0 or step == args.steps:
            save(args.work, vm, opt, step)
        if step % args.eval_every == 0 or step == args.steps:
            vm.tracker_model.eval()
            vm.tracker_neck.eval()
            globals()["CLIP_MIX"] = mix  # held-out clips: always the full mix
            ev = quick_eval(tr, args.eval_clips, args.frames, size, args.objects)
            probe = occlusion_probe(tr, size)
            vm.tracker_model.train()
            vm.tracker_neck.train()
            print(f"[toy-tracker] eval step {step}: " + json.dumps({k: round(v, 4) for k, v in ev.items()})
                  + f" occlusion clip frames 2-13 IoU {probe}", flush=True)
        if args.deadline_minutes and time.time() - t0 > args.deadline_minutes * 60:
            save(args.work, vm, opt, step)
            print(f"[toy-tracker] deadline: saved at step {step}", flush=True)
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
