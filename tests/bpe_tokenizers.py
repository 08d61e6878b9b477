"""Real byte-level BPE tokenizers built offline with the ``tokenizers`` library (no hub access), shaped like the
ones of the models tests convert: Llama-3 (adds ``<|begin_of_text|>`` as BOS through its post-processor), Mistral
(``<s>``, the same way) and
Qwen2.5 (adds nothing; ``<|endoftext|>`` pads). Trained on the LC-Rec template text, so template words merge
into multi-character pieces while code strings like ``<a_47>`` still split into several pieces -- what a
pretrained tokenizer does to them before ``convert`` adds them as tokens."""

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from earn_export.data.prompts import TEMPLATES

CORPUS = [TEMPLATES["lcrec"].replace("{prefix}", "").replace("{suffix}", "").replace("{items}", w)
          for w in ("a, b, c", "items 1 2 3 4 5 6 7 8 9 0", "one two three")] * 20


def bpe_tokenizer(kind: str = "llama3", vocab_size: int = 400) -> PreTrainedTokenizerFast:
    specials = {"llama3": ["<|begin_of_text|>", "<|end_of_text|>"],
                "mistral": ["<s>", "</s>", "<unk>"],  # Mistral-Nemo's Tekken: byte-level BPE, BOS <s>
                "qwen2": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]}[kind]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(CORPUS, trainer)
    if kind in ("llama3", "mistral"):
        bos = specials[0]
        tk.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                          special_tokens=[(bos, tk.token_to_id(bos))])
        return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=bos, eos_token=specials[1])
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>")
