// Internals shared by the datasets/tokenizer_*.c files (not part of the public API; tests may use it).
//
// Pipeline of dt_tokenizer_encode, as Hugging Face tokenizers runs it:
//   text → split out added tokens that match the raw text → normalize each remaining section →
//   split out added tokens that match normalized text → pre-tokenize into pieces → BPE each piece →
//   wrap with the post-processor's BOS/EOS.
// For byte-level tokenizers the model works on raw bytes: vocab strings are mapped back through the GPT-2
// byte↔char table once (byte_id), so pieces never need the byte→char expansion except for whole-word
// lookups (ignore_merges).
#ifndef DT_TOKENIZER_IMPL_H
#define DT_TOKENIZER_IMPL_H

// The largest token id a tokenizer may use (tk_finish_ids): ids index dense tables.
#define TK_MAX_IDS (1 << 24)
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include "datasets/tokenizer.h"

// ---- growable byte buffer and a block arena whose pointers stay valid while it grows
typedef struct { char *p; size_t n, cap; } tk_buf;
int  tk_buf_reserve(dt_ctx *ctx, tk_buf *b, size_t extra);
int  tk_buf_put(dt_ctx *ctx, tk_buf *b, const void *s, size_t n);
void tk_buf_free(tk_buf *b);
// Grows *p (an array of elem-byte items with *cap slots) to hold at least need items.
int  tk_grow(dt_ctx *ctx, void **p, size_t *cap, size_t need, size_t elem);

typedef struct tk_block tk_block;
typedef struct { tk_block *head; } tk_arena;
char *tk_arena_alloc(dt_ctx *ctx, tk_arena *a, size_t n);
void  tk_arena_free(tk_arena *a);

uint64_t tk_hash(const void *p, size_t n);

// ---- Unicode helpers (tokenizer_unicode.c)
size_t   tk_utf8_valid_prefix(const char *s, size_t n);      // n when all of s is valid UTF-8
uint32_t tk_utf8_next(const char *s, size_t n, size_t *adv); // code point at s (s valid UTF-8)
uint32_t tk_utf8_prev(const char *s, size_t n, size_t *back); // code point ending at s + n
int      tk_utf8_put(uint32_t cp, char out[4]);               // bytes written
bool     tk_is_white_space(uint32_t cp);                      // Unicode White_Space (Rust's \s)
bool     tk_is_word_char(uint32_t cp);                        // Rust regex's Unicode \w
// Appends s to out, replacing each maximal invalid UTF-8 subpart by U+FFFD (Rust's from_utf8_lossy).
int      tk_utf8_lossy(dt_ctx *ctx, tk_buf *out, const char *s, size_t n);
// GPT-2's byte → printable code point table used by the ByteLevel pre-tokenizer and decoder.
void     tk_byte_level_table(uint16_t byte_to_cp[256]);

// ---- string → id map (open addressing); it owns NUL-terminated copies of its keys. A slot holds all a
// lookup needs, so a hit touches one slot and one key (loading Qwen3 does 600k lookups).
typedef struct { uint32_t hash, off, len; int32_t id; } tk_slot; // hash 0 = empty slot
typedef struct {
    char *arena; size_t arena_len, arena_cap;
    tk_slot *slot; size_t mask, n;
} tk_strmap;
int     tk_strmap_init(dt_ctx *ctx, tk_strmap *m, size_t expected, size_t expected_bytes);
// Adds key → id, or replaces the id when the key is present.
int     tk_strmap_put(dt_ctx *ctx, tk_strmap *m, const char *key, size_t len, int32_t id);
int32_t tk_strmap_get(const tk_strmap *m, const char *key, size_t len); // -1 when absent
// Iterate with: for (size_t i = 0; i <= m->mask; i++) if (m->slot[i].hash) ...
static inline const char *tk_strmap_key(const tk_strmap *m, const tk_slot *s) { return m->arena + s->off; }
void    tk_strmap_free(tk_strmap *m);

// ---- (left id, right id) → (rank, merged id)
typedef struct { uint64_t key; int32_t rank, id; } tk_pair;
typedef struct { tk_pair *slot; size_t mask; int shift; } tk_pairmap;
int  tk_pairmap_init(dt_ctx *ctx, tk_pairmap *m, size_t expected);
void tk_pairmap_put(tk_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id); // later puts win, as in HF
static inline const tk_pair *tk_pairmap_get(const tk_pairmap *m, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> m->shift);
    for (;; i = (i + 1) & m->mask) {
        if (m->slot[i].key == key) return &m->slot[i];
        if (m->slot[i].key == UINT64_MAX) return NULL;
    }
}
void tk_pairmap_free(tk_pairmap *m);

// ---- word → ids cache, in shards: a thread uses the shard its id hashes to, so threads rarely share a
// lock or a cache line (one shared table stopped 2 threads from scaling). Each shard is direct-mapped
// under its own mutex; entries are malloc'd (ids, then key bytes) and a new word replaces whatever held
// its slot. Pieces longer than TK_CACHE_SMALL bytes may only use the first TK_CACHE_BIG_SLOTS slots of a
// shard, which bounds the memory (typically 1-2 MiB per busy shard). A shard's slot table is allocated by
// its first put, and `filled` lists the slots ever used, so a tokenizer that tokenizes little (a command
// that reads a few lines, a fuzz input) neither allocates nor walks 16 x 16384 empty slots.
#define TK_CACHE_SHARDS 16
#define TK_CACHE_SLOTS (1u << 14)
#define TK_CACHE_BIG_SLOTS (1u << 10)
#define TK_CACHE_SMALL 64
#define TK_CACHE_KEY 1024 // longest cached piece: 256 characters, as the JS reference caches
typedef struct { uint64_t hash; uint32_t klen, nids; } tk_cache_entry;
typedef struct {
    _Alignas(64) pthread_mutex_t lock;
    tk_cache_entry **slots; // (TK_CACHE_SLOTS) or NULL before the first put
    uint16_t *filled;       // (TK_CACHE_SLOTS) indices of the slots ever used, n_filled of them
    uint32_t n_filled;
} tk_cache_shard;
typedef struct { tk_cache_shard *shards; } tk_cache;
int  tk_cache_init(dt_ctx *ctx, tk_cache *c);
void tk_cache_free(tk_cache *c);
// The shard of the calling thread.
tk_cache_shard *tk_cache_shard_of_thread(const tk_cache *c);
// Copies the cached ids of key into ids (room for cap) and returns their count, or -1.
int  tk_cache_get(tk_cache_shard *c, uint64_t hash, const char *key, size_t klen, int32_t *ids, size_t cap);
void tk_cache_put(tk_cache_shard *c, uint64_t hash, const char *key, size_t klen, const int32_t *ids, size_t n);

// ---- normalizers (tokenizer_normalize.c)
typedef enum { TK_NORM_NFC, TK_NORM_NFD, TK_NORM_NFKC, TK_NORM_NFKD, TK_NORM_PREPEND, TK_NORM_REPLACE,
               TK_NORM_LOWERCASE, TK_NORM_STRIP } tk_norm_kind;
typedef struct {
    tk_norm_kind kind;
    char *str; size_t len;         // PREPEND: the prefix; REPLACE: the replacement
    pcre2_code *re;                // REPLACE: the pattern (a String one compiled as a literal)
    bool left, right;              // STRIP
} tk_norm;

// ---- pre-tokenizers (tokenizer_pretok.c); Digits, Whitespace and Metaspace's split become SPLIT steps
typedef enum { TK_SPLIT_REMOVED, TK_SPLIT_ISOLATED, TK_SPLIT_MERGED_PREV, TK_SPLIT_MERGED_NEXT,
               TK_SPLIT_CONTIGUOUS } tk_split_behavior;
typedef enum { TK_PRE_SPLIT, TK_PRE_BYTE_LEVEL, TK_PRE_METASPACE } tk_pre_kind;
typedef enum { TK_PREPEND_ALWAYS, TK_PREPEND_FIRST, TK_PREPEND_NEVER } tk_prepend;
typedef struct {
    tk_pre_kind kind;
    pcre2_code *re;               // SPLIT (String patterns use PCRE2_LITERAL); BYTE_LEVEL: GPT-2's, or NULL
    tk_split_behavior behavior;
    bool invert;
    bool add_prefix_space;        // BYTE_LEVEL
    char repl[8]; size_t repl_len; // METASPACE replacement character (UTF-8)
    tk_prepend prepend;           // METASPACE
} tk_pre;

// ---- decoders (tokenizer_decode.c)
typedef enum { TK_DEC_BYTE_LEVEL, TK_DEC_REPLACE, TK_DEC_BYTE_FALLBACK, TK_DEC_FUSE, TK_DEC_STRIP,
               TK_DEC_METASPACE } tk_dec_kind;
typedef struct {
    tk_dec_kind kind;
    char *pat; size_t pat_len;   // REPLACE: the pattern; STRIP, METASPACE: the character
    char *str; size_t len;       // REPLACE: the replacement
    size_t start, stop;          // STRIP: how many to remove at each end
    bool prepend;                // METASPACE: strip the space it added in front of the first token
} tk_dec;

// ---- added tokens, matched with a byte trie (leftmost-longest, like HF's Aho-Corasick)
typedef struct { char *content; size_t len; int32_t id; bool single_word, lstrip, rstrip, normalized, special; } tk_added;
typedef struct { uint8_t byte; int32_t child, sibling, tok; } tk_trie_node; // tok: index into added, or -1
typedef struct { tk_trie_node *node; size_t n, cap; uint8_t start[256]; } tk_trie; // start: first bytes

// A section of text between added tokens: the span [off, off + len) or, when id >= 0, one added token.
typedef struct { size_t off, len; int32_t id; } tk_seg;
typedef struct { const char *p; size_t n; } tk_piece;

typedef enum { TK_MODEL_BPE, TK_MODEL_LLAMA2C } tk_model_kind;

struct dt_tokenizer {
    tk_model_kind model;
    char *path;                   // for messages
    // Model vocabulary: token string as in tokenizer.json (or the llama2.c piece) → id.
    tk_strmap vocab;
    int32_t n_ids;                // 1 + largest id over vocab and added tokens
    const char **id_str;          // (n_ids) the token's string, NULL for holes
    uint8_t *special;             // (n_ids) 1 for special tokens
    // BPE
    tk_pairmap merges;
    bool byte_level;              // pieces are raw bytes; vocab strings are GPT-2 byte-level strings
    int32_t byte_id[256];         // byte-level: the id of each single-byte token, -1 when absent
    int32_t fallback_id[256];     // the <0xXX> tokens, -1 when absent
    int32_t unk_id;
    bool byte_fallback, fuse_unk, ignore_merges;
    bool split_meta;              // encode may cut pre-tokenizer-less text before each '▁' run (see json.c)
    uint16_t byte_to_cp[256];
    int16_t cp_to_byte[324];      // inverse of byte_to_cp (code points below 324), -1 elsewhere
    // llama2.c
    float *scores;                // (n_ids)
    tk_buf pieces;                // every piece, NUL-terminated, in id order (id_str points here)
    int32_t space_id;             // the " " piece added in front of the text, -1 when absent
    // Added tokens; `raw` matches before normalizing, `norm` after.
    tk_added *added; size_t n_added;
    tk_strmap added_map;          // content → id, checked before the vocabulary like HF's token_to_id
    tk_trie raw, norm;
    tk_norm *norms; size_t n_norms;
    tk_pre *pres; size_t n_pres;
    tk_dec *decs; size_t n_decs;
    char *dec_unsupported;        // non-NULL: the decoder type we cannot run (decode then fails)
    bool has_decoder;
    int32_t *prefix; size_t n_prefix; // ids the post-processor puts around a sequence
    int32_t *suffix; size_t n_suffix;
    int32_t bos, eos, pad;
    int32_t eot;                  // a GGUF's tokenizer.ggml.eot_token_id (end of turn), -1 when none
    bool from_gguf;               // read from a GGUF's tokenizer.ggml.* metadata
    // GGUF: the normalizer, pre-tokenizer and decoder as tokenizer.json spells them (jansson json_t *,
    // NULL: none), kept so that tokenizer_hf_write.c can write the tokenizer back as tokenizer.json.
    void *gguf_desc[3];
    char *chat_template;
    tk_cache cache;
};

// Scratch memory of one encode call, so encode needs no lock and no per-piece malloc.
typedef struct {
    tk_buf nb[2];                 // normalizer ping-pong buffers
    int32_t *u32; size_t u32_cap; // utf8proc code points
    tk_seg *seg[2]; size_t seg_cap[2];
    tk_piece *pc[2]; size_t pc_cap[2];
    tk_seg *ms; size_t ms_cap;    // regex matches of one piece
    tk_arena arena;               // strings built by pre-tokenizers
    pcre2_match_data *md;
    int32_t *sym; size_t sym_cap; // BPE symbols and their scratch arrays
    int32_t *aux; size_t aux_cap;
    tk_buf word;                  // byte-level → vocab string conversion
    tk_cache_shard *shard;        // this thread's part of the word cache
} tk_work;
void tk_work_free(tk_work *w);

// tokenizer_json.c / tokenizer_config.c / tokenizer_llama2c.c / tokenizer_gguf.c
int tk_load_hf(dt_ctx *ctx, dt_tokenizer *tok, const char *json_path, const char *config_path);
// The normalizer, pre-tokenizer and decoder as tokenizer.json spells them (jansson values; NULL or JSON
// null: none). The GGUF reader describes its pipelines this way too, so both paths run the same steps.
int tk_read_pipeline(dt_ctx *ctx, dt_tokenizer *tok, const void *normalizer, const void *pre, const void *decoder,
                     const char *path);
// After the vocabulary and pre-tokenizers are in: the single-byte lookups and split_meta.
void tk_model_tables(dt_tokenizer *tok);
// Fills tok from the tokenizer.ggml.* metadata of a GGUF file (tok->path names it in messages).
int tk_load_gguf(dt_ctx *ctx, dt_tokenizer *tok, const struct dt_gguf_file *f);
int tk_load_config(dt_ctx *ctx, dt_tokenizer *tok, const char *config_path, const void *post_processor,
                   const void *padding);
int tk_load_llama2c(dt_ctx *ctx, dt_tokenizer *tok, const char *path);
int tk_finish_ids(dt_ctx *ctx, dt_tokenizer *tok); // fills n_ids, id_str, special after loading
int tk_read_file(dt_ctx *ctx, const char *path, char **data, size_t *len);

// tokenizer_normalize.c: normalizes s into one of w->nb (or returns s unchanged).
int tk_normalize(dt_ctx *ctx, const dt_tokenizer *tok, tk_work *w, const char *s, size_t n,
                 const char **out, size_t *out_n);
void tk_norms_free(tk_norm *n, size_t count);

// tokenizer_pretok.c
int  tk_regex_compile(dt_ctx *ctx, const char *pattern, size_t len, bool literal, pcre2_code **out);
// The next match of re in s at or after *pos: *found, and [*ms, *me). *pos moves past it (one character
// past an empty match, as HF's find_iter does).
int  tk_regex_find(dt_ctx *ctx, const pcre2_code *re, pcre2_match_data *md, const char *s, size_t n, size_t *pos,
                   size_t *ms, size_t *me, bool *found);
// Splits s into pieces (*out, valid until the next call); first: s starts the text (Metaspace "first").
int  tk_pretokenize(dt_ctx *ctx, const dt_tokenizer *tok, tk_work *w, const char *s, size_t n, bool first,
                    const tk_piece **out, size_t *n_out);
void tk_pres_free(tk_pre *p, size_t count);

// tokenizer_added.c
int  tk_trie_add(dt_ctx *ctx, tk_trie *t, const char *s, size_t n, int32_t tok);
void tk_trie_free(tk_trie *t);
// Splits s into w->seg[which] segments on the added tokens of trie t, honouring lstrip/rstrip/single_word.
int  tk_split_added(dt_ctx *ctx, const dt_tokenizer *tok, const tk_trie *t, tk_work *w, int which,
                    const char *s, size_t n, size_t *n_seg);

// tokenizer_bpe.c
int tk_bpe_piece(dt_ctx *ctx, const dt_tokenizer *tok, tk_work *w, const char *s, size_t n, dt_ids *ids);
// Applies merges to sym[0..n) in place (lowest rank first, leftmost on ties); returns the new count.
// The naive O(n²) scan and the heap version must agree; aux needs 8 * n ints.
size_t tk_bpe_merge_naive(const tk_pairmap *m, int32_t *sym, size_t n, int32_t *aux);
size_t tk_bpe_merge_heap(const tk_pairmap *m, int32_t *sym, size_t n, int32_t *aux);

// tokenizer_llama2c.c
int tk_llama2c_encode(dt_ctx *ctx, const dt_tokenizer *tok, tk_work *w, const char *s, size_t n, dt_ids *ids);
int tk_llama2c_decode(dt_ctx *ctx, const dt_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special,
                      tk_buf *out);

// tokenizer_decode.c
int  tk_decode_hf(dt_ctx *ctx, const dt_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special,
                  tk_buf *out);
void tk_decs_free(tk_dec *d, size_t count);

#endif
