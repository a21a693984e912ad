"""A plain PyTorch forward of the official I-JEPA / StoP layout, written from the
papers' ViT (patchify by a strided conv, fixed positions added before masking,
pre-LayerNorm blocks with fused qkv and an exact-GELU MLP, final LayerNorm; the
predictor's linear map in, positions, mask tokens, blocks, norm, linear map out).
The converter's self-check compares the Keras model against it."""

import numpy as np


def _tensors(state, keys=None):
    import torch

    out = {}
    for key in keys or state:
        value = np.asarray(state[key].load(), np.float32)
        out[key] = torch.as_tensor(value)
    return out


def _block(x, w, prefix, num_heads, eps):
    import torch
    import torch.nn.functional as F

    b, n, d = x.shape
    h = F.layer_norm(x, (d,), w[f"{prefix}.norm1.weight"], w[f"{prefix}.norm1.bias"], eps)
    qkv = F.linear(h, w[f"{prefix}.attn.qkv.weight"], w.get(f"{prefix}.attn.qkv.bias"))
    q, k, v = qkv.reshape(b, n, 3, num_heads, d // num_heads).permute(2, 0, 3, 1, 4)
    attn = torch.softmax((q @ k.transpose(-2, -1)) * (d // num_heads) ** -0.5, dim=-1)
    o = (attn @ v).transpose(1, 2).reshape(b, n, d)
    x = x + F.linear(o, w[f"{prefix}.attn.proj.weight"], w[f"{prefix}.attn.proj.bias"])
    h = F.layer_norm(x, (d,), w[f"{prefix}.norm2.weight"], w[f"{prefix}.norm2.bias"], eps)
    h = F.linear(F.gelu(F.linear(h, w[f"{prefix}.mlp.fc1.weight"], w[f"{prefix}.mlp.fc1.bias"])),
                 w[f"{prefix}.mlp.fc2.weight"], w[f"{prefix}.mlp.fc2.bias"])
    return x + h


def encoder_forward(state, images, num_heads, pos_table, eps=1e-6, context_indices=None):
    """Tokens `(B, N or Kc, D)` of an official encoder state dict (`{key: lazy
    tensor}`) on NHWC `images`, with `pos_table` `(N, D)` as its positions."""
    import torch
    import torch.nn.functional as F

    w = _tensors(state)
    depth = len({k.split(".")[1] for k in w if k.startswith("blocks.")})
    with torch.no_grad():
        x = torch.as_tensor(np.asarray(images, np.float32)).permute(0, 3, 1, 2)
        p = w["patch_embed.proj.weight"].shape[-1]
        x = F.conv2d(x, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], stride=p)
        x = x.flatten(2).transpose(1, 2) + torch.as_tensor(np.asarray(pos_table, np.float32))[None]
        if context_indices is not None:
            idx = torch.as_tensor(np.asarray(context_indices, np.int64))
            x = torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))
        for i in range(depth):
            x = _block(x, w, f"blocks.{i}", num_heads, eps)
        x = F.layer_norm(x, (x.shape[-1],), w["norm.weight"], w["norm.bias"], eps)
    return x.numpy()


def predictor_forward(state, context, context_indices, target_indices, num_heads, pos_table,
                      mask_token=False, eps=1e-6):
    """Predictions `(B, M, Kt, De)` of an official predictor state dict at sigma 0
    (masked tokens `psi + b`, StoP) or with its mask token (`psi + mask_token`,
    I-JEPA), for context tokens `(B, Kc, De)` and indices `(B, Kc)`, `(B, M, Kt)`."""
    import torch
    import torch.nn.functional as F

    w = _tensors(state)
    depth = len({k.split(".")[1] for k in w if k.startswith("predictor_blocks.")})
    with torch.no_grad():
        psi = torch.as_tensor(np.asarray(pos_table, np.float32))
        ctx_idx = torch.as_tensor(np.asarray(context_indices, np.int64))
        tgt_idx = torch.as_tensor(np.asarray(target_indices, np.int64))
        b, m, kt = tgt_idx.shape
        x = F.linear(torch.as_tensor(np.asarray(context, np.float32)), w["predictor_embed.weight"],
                     w["predictor_embed.bias"]) + psi[ctx_idx]
        masked = psi[tgt_idx] + (w["mask_token"].reshape(-1) if mask_token else w["predictor_embed.bias"])
        kc = x.shape[1]
        x = torch.cat([x[:, None].expand(-1, m, -1, -1), masked], dim=2).reshape(b * m, kc + kt, -1)
        for i in range(depth):
            x = _block(x, w, f"predictor_blocks.{i}", num_heads, eps)
        x = F.layer_norm(x, (x.shape[-1],), w["predictor_norm.weight"], w["predictor_norm.bias"], eps)
        x = F.linear(x[:, kc:], w["predictor_proj.weight"], w["predictor_proj.bias"])
    return x.reshape(b, m, kt, -1).numpy()
