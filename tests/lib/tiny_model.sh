# tests/lib/tiny_model.sh — sourced by the training shell tests (tests/run_train_*.sh,
# tests/gpu/train_smoke.sh): builds the tiny trainable model directory they share.
#
#   tiny_model_dir DIR   DIR gets the random-init tiny Llama (tests/data/models/tiny-llama:
#                        config, weights, generation config), the SentencePiece-style
#                        tokenizer tests/data/tokenizers/llama2.json (vocab matches the model)
#                        and a ChatML tokenizer_config.json (tests/data/train/). Run from the
#                        repository root. Returns non-zero if a copy fails.
tiny_model_dir() {
  mkdir -p "$1" &&
  cp tests/data/models/tiny-llama/config.json tests/data/models/tiny-llama/model.safetensors \
     tests/data/models/tiny-llama/generation_config.json "$1/" &&
  cp tests/data/tokenizers/llama2.json "$1/tokenizer.json" &&
  cp tests/data/train/chatml.tokenizer_config.json "$1/tokenizer_config.json"
}
