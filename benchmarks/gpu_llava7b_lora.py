"""LLaVA-1.5-7B-shaped policy on a GPU: bf16 random weights, LoRA r=128, generation, adapter-off parity, peak memory.

No weights can be downloaded, so the model is built from LLaVA-1.5-7B's architecture (CLIP ViT-L/14-336 vision tower,
2-layer GELU projector, Vicuna/Llama-7B language model) with random weights. Checks:
  1. LoRA at init (B = 0): logits with the adapter equal the adapter-disabled (reference) logits;
  2. after perturbing the LoRA weights they differ, and `reference()` still reproduces the base model's logits;
  3. greedy generation of a batch, tokens/s; peak GPU memory of each phase; parameter report.

    python benchmarks/gpu_llava7b_lora.py               # on a GPU (bf16)
    python benchmarks/gpu_llava7b_lora.py --tiny        # the same code on CPU with a scaled-down config (a smoke test)
"""
import argparse
import json
import time

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from fisao.models import PolicyWithValue, format_param_report, lora_config, param_report


def llava15_7b_config(tiny: bool) -> LlavaConfig:
    if tiny:
        vision = CLIPVisionConfig(image_size=56, patch_size=14, hidden_size=64, intermediate_size=256,
                                  num_hidden_layers=3, num_attention_heads=4, projection_dim=32)
        text = LlamaConfig(vocab_size=32064, hidden_size=128, intermediate_size=344, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096)
    else:  # llava-hf/llava-1.5-7b-hf's config.json
        vision = CLIPVisionConfig(image_size=336, patch_size=14, hidden_size=1024, intermediate_size=4096,
                                  num_hidden_layers=24, num_attention_heads=16, projection_dim=768)
        text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                           num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                           rms_norm_eps=1e-5)
    n_img = (vision.image_size // vision.patch_size) ** 2
    return LlavaConfig(vision_config=vision, text_config=text, image_token_id=32000, vision_feature_layer=-2,
                       vision_feature_select_strategy='default', projector_hidden_act='gelu', image_seq_length=n_img,
                       pad_token_id=32001)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--tiny', action='store_true'); ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--prompt-len', type=int, default=32); ap.add_argument('--new-tokens', type=int, default=64)
    ap.add_argument('--out', default=None, help='write the numbers as JSON here')
    args = ap.parse_args()
    dev = 'cuda' if torch.cuda.is_available() and not args.tiny else 'cpu'
    dtype = torch.bfloat16 if dev == 'cuda' else torch.float32
    cfg = llava15_7b_config(args.tiny)
    res = {'device': torch.cuda.get_device_name(0) if dev == 'cuda' else 'cpu', 'dtype': str(dtype), 'tiny': args.tiny}
    sync = torch.cuda.synchronize if dev == 'cuda' else (lambda: None)
    mem = (lambda: torch.cuda.max_memory_allocated() / 2**30) if dev == 'cuda' else (lambda: float('nan'))
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(dev): model = LlavaForConditionalGeneration(cfg).to(dtype)
    model.eval().requires_grad_(False)
    res['build_s'] = time.perf_counter() - t0; res['mem_model_gib'] = mem()
    n_img = cfg.image_seq_length
    B, T = args.batch, args.prompt_len
    ids = torch.cat([torch.ones(B, 1, dtype=torch.long, device=dev),                      # <s>
                     torch.full((B, n_img), cfg.image_token_id, device=dev),              # <image> x 576 (x 16 tiny)
                     torch.randint(2, 32000, (B, T), device=dev)], 1)                     # prompt text
    mask = torch.ones_like(ids)
    pixels = torch.randn(B, 3, cfg.vision_config.image_size, cfg.vision_config.image_size, device=dev, dtype=dtype)
    with torch.no_grad(): base = model(input_ids=ids, attention_mask=mask, pixel_values=pixels).logits.float()
    policy = PolicyWithValue.from_base(model, 'llava', lora_config('llava', r=128, alpha=256)).to(dev)
    res['params'] = param_report(policy)
    print(format_param_report(res['params']))
    with torch.no_grad():
        logits, values = policy(input_ids=ids, attention_mask=mask, pixel_values=pixels)
        res['lora_init_max_abs_diff'] = (logits.float() - base).abs().max().item()
        res['values_at_init_max_abs'] = values.abs().max().item()
        for n, p in policy.named_parameters():
            if 'lora_B' in n: p.normal_(0, 0.02)
        on = policy(input_ids=ids, attention_mask=mask, pixel_values=pixels)[0].float()
        with policy.reference(): off = policy(input_ids=ids, attention_mask=mask, pixel_values=pixels)[0].float()
        res['perturbed_lora_vs_base_max_abs_diff'] = (on - base).abs().max().item()
        res['reference_vs_base_max_abs_diff'] = (off - base).abs().max().item()
    res['mem_forward_gib'] = mem()
    sync(); t0 = time.perf_counter()
    with torch.no_grad():
        out = policy.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=args.new_tokens,
                              min_new_tokens=args.new_tokens, do_sample=False)
    sync(); dt = time.perf_counter() - t0
    res.update({'generate_s': dt, 'generated_tokens_per_s': B * (out.shape[1] - ids.shape[1]) / dt,
                'mem_generate_gib': mem()})
    ok = (res['lora_init_max_abs_diff'] == 0.0 and res['reference_vs_base_max_abs_diff'] == 0.0
          and res['perturbed_lora_vs_base_max_abs_diff'] > 0)
    res['parity_ok'] = ok
    print(json.dumps({k: v for k, v in res.items() if k != 'params'}, indent=1))
    if args.out: open(args.out, 'w').write(json.dumps(res, indent=1))
    raise SystemExit(0 if ok else 1)


if __name__ == '__main__':
    main()
