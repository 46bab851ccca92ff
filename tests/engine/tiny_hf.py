"""Tiny transformers models built from configs and saved locally (nothing downloaded): a word-level
tokenizer with a chat template, a T5 (seq2seq) and a Llama (causal), and a toy prompt -> answer set."""

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

FACTS = {"sky": "light blue", "grass": "green", "snow": "white", "coal": "black", "sun": "yellow",
         "blood": "dark red", "sea": "deep blue", "cloud": "grey"}
SYSTEM = "Name the colour of the thing ."
#: Each message ends with the end-of-sequence token, as real templates end a turn, so a model
#: trained on an assistant turn learns to stop.
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} </s>\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant :{% endif %}")


def toy_pairs() -> tuple[list[list[dict]], list[str]]:
    """(chat prompts, answers) of the toy task."""
    prompts = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"what colour is {thing} ?"}]
               for thing in FACTS]
    return prompts, list(FACTS.values())


def _tokenizer(chat: bool) -> PreTrainedTokenizerFast:
    words = {w for text in [SYSTEM, CHAT_TEMPLATE, "what colour is ? system user assistant :", *FACTS, *FACTS.values()]
             for w in text.replace("\n", " ").split()}
    special = ["<pad>", "</s>", "<unk>", "<s>"]
    vocab = {t: i for i, t in enumerate([*special, *sorted(words - set(special))])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>",
                                        unk_token="<unk>", bos_token="<s>")
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def save_tiny_t5(path: Path) -> Path:
    tokenizer = _tokenizer(chat=False)
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2,
        dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def save_tiny_llama(path: Path) -> Path:
    tokenizer = _tokenizer(chat=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.2, pad_token_id=0, eos_token_id=1,
        bos_token_id=3))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
