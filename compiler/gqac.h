/*
 * gqac.h: the compiler's internal header, one section per file, in pipeline
 * order:
 *
 *   util.c, diag.c -> lexer.l -> parser.y -> sema.c (front.c: all three)
 *     -> ir.c -> plan.c -> emit_c.c, emit_weights.c -> output.c
 *   then what drives it: cache.c, run.c, jit.c; and the other commands:
 *   import.c, export.c, tune.c, report.c (main.c: the command line)
 *
 * The parser builds an Ast (a tree of key = value items and blocks), sema
 * checks it against the schema and resolves it into a Model (the model IR:
 * plain numbers, no syntax), plan.c fixes the kernel parameters for one
 * Model (every template hole and unroll factor), and emit_c.c prints C from
 * the templates and the plan.  Each pass owns its errors; none exits.
 */
#ifndef GQAC_H
#define GQAC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define GQAC_VERSION "0.1.0"

typedef struct Arena Arena;
typedef struct Source Source;
typedef struct Diag Diag;
typedef struct Loc Loc;
typedef struct Expr Expr;
typedef struct Item Item;
typedef struct Ast Ast;
typedef struct Model Model;
typedef struct Tensor Tensor;
typedef struct Stats Stats;
typedef struct Plan Plan;

/* ---- util.c: arena, buffers, strings, exit codes ---- */

/* gqac's exit status: what scripts may rely on. */
enum { EXIT_OK = 0, EXIT_INPUT = 1 /* a bad or unreadable input, an unwritable output */,
       EXIT_USAGE = 2 /* a bad command line */ };

/* A per-compilation arena: every AST node, string and IR object lives here
 * and dies with it, so error paths never leak and never double free. */
Arena *arena_new(void);
void arena_free(Arena *a);
void *arena_alloc(Arena *a, size_t n);
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_printf(Arena *a, const char *fmt, ...);

/* Checked unsigned 64-bit arithmetic: false on overflow. */
bool mul_u64(uint64_t a, uint64_t b, uint64_t *out);
bool add_u64(uint64_t a, uint64_t b, uint64_t *out);

/* Generated text goes to a growable buffer so a failed write never leaves
 * half a file behind. */
typedef struct {
    char *data;
    size_t len, cap;
} Buf;

void buf_puts(Buf *b, const char *s);
void buf_putn(Buf *b, const char *s, size_t n);
void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_free(Buf *b);

/* Whether s is all of a decimal whole number in [lo, hi] (*out: what strtol read): a flag's value. */
bool whole(const char *s, long lo, long hi, long *out);

/* A monotonic clock in seconds, for durations. */
double now_seconds(void);

/* Edits (insert, delete, replace) from a to b, for "did you mean"; 99
 * past 31 bytes. */
int edit_distance(const char *a, const char *b);

/* ---- diag.c: sources and diagnostics ---- */

struct Source {
    const char *name; /* as given on the command line, or "<stdin>" */
    const char *text; /* NUL-terminated; may contain other NULs, which the lexer rejects */
    size_t len;
};

/* 1-based line and column of the first byte, and the column just past the
 * last byte on the same line (end_col == col: a point). */
struct Loc {
    int line, col, end_col;
};

struct Diag {
    const Source *src;
    FILE *out;  /* where messages go (stderr, a memory stream in tests); NULL: nowhere */
    int errors; /* count so far */
};

void diag_init(Diag *d, const Source *src, FILE *out);
void diag_error(Diag *d, Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void diag_note(Diag *d, Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The text of line `line` (1-based) and its length without the newline
 * (\n, \r\n or \r); NULL past the end. */
const char *diag_line(const Source *s, int line, size_t *len);
/* Bytes of a UTF-8 byte order mark at the start of s (3 or 0): the
 * lexer and the lines above begin after it. */
size_t diag_bom(const Source *s);
/* An error with no source position: "file: error: msg". */
void diag_error_file(Diag *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- parser.y + lexer.l: source -> Ast ---- */

typedef enum {
    EX_INT,    /* ival */
    EX_FLOAT,  /* fval */
    EX_BOOL,   /* ival: 0 or 1 */
    EX_STRING, /* str */
    EX_NAME,   /* str: a dotted name, e.g. "heads" or "attention.heads" */
    EX_NEG,    /* -lhs */
    EX_BINARY, /* lhs op rhs, op one of + - * / */
    EX_LIST,   /* [a, b, ...]: ival elements, the first at lhs, each the next's via next */
} ExprKind;

struct Expr {
    ExprKind kind;
    Loc loc; /* the whole expression */
    int depth; /* of the tree below, bounded so that evaluation cannot exhaust the stack */
    char op;
    Expr *lhs, *rhs;
    int64_t ival;
    double fval;
    const char *str;
    Expr *next; /* the next element of the list this one is in */
};

/* `key = value` (value != NULL) or `key [kind] { children }` (a block). */
struct Item {
    Loc loc;          /* the key */
    const char *key;
    const char *kind; /* a block's kind word (`ffn swiglu {`), or NULL */
    Loc kind_loc;
    Expr *value;
    Item *children;
    bool is_block;
    Item *next;
};

struct Ast {
    Arena *arena; /* the tree's, and what sema derives from it (per-layer types) */
    const char *name; /* the model's name string, unescaped; NULL if absent */
    Loc name_loc;
    Item *items;
};

/* Parses src; returns NULL only if nothing usable was parsed.  Errors go to
 * d; the caller checks d->errors. */
Ast *parse_source(Arena *a, Diag *d);

/* ---- sema.c: Ast -> Model ---- */

typedef enum { NORM_RMSNORM, NORM_LAYERNORM } NormKind;
typedef enum { FFN_SWIGLU, FFN_GELU } FfnKind;
/* Weight and cache types, numbered as gqa_api.h's GQA_DT_* (ggml's
 * layouts for the block types). */
typedef enum { DT_F32, DT_F16, DT_BF16, DT_Q4_0, DT_Q8_0, DT_Q4_K, DT_Q6_K, DT_COUNT } DType;

/* Weight tensor kinds, in checkpoint order: gqa_api.h's GQA_T_*. */
typedef enum {
    TK_EMBED, TK_RMS_ATT, TK_WQ, TK_WK, TK_WV, TK_WO, TK_RMS_FFN, TK_W1, TK_W2, TK_W3,
    TK_RMS_FINAL, TK_CLS, TK_BQ, TK_BK, TK_BV, TK_COUNT
} TensorKind;

/* The model IR: every field resolved to a number, with the location that
 * set it (for diagnostics raised after sema, like size overflows). */
struct Model {
    const char *name;
    Loc name_loc;
    int64_t vocab, dim, layers, context;
    int64_t heads, kv_heads, head_dim, hidden;
    double rope_theta, norm_eps;
    bool rope_halves; /* pairs (i, i + head_dim/2), not (2i, 2i+1) */
    bool rope_llama3; /* Llama 3's frequency scaling, by the four below */
    double rope_factor, rope_low_freq, rope_high_freq;
    int64_t rope_original_context;
    bool qkv_bias, tied;
    NormKind norm;
    FfnKind ffn;
    DType weight_type, kv_type; /* weight_type: every matrix's, unless set by kind below */
    /* Sliding-window attention: window 0 for none; else each layer sees
     * the window positions up to its own and the first sinks, but every
     * global_every-th layer (0: none) sees all. */
    int64_t window, sinks, global_every;
    /* The dtype block's keys that name a tensor kind: one type for every
     * layer (layer_types NULL), or a list of one per layer (layers entries). */
    bool kind_set[TK_COUNT];
    DType kind_type[TK_COUNT];
    const DType *layer_types[TK_COUNT];
    Loc loc_type[TK_COUNT]; /* the value that set it */
    Loc loc_vocab, loc_dim, loc_layers, loc_context, loc_heads, loc_kv_heads,
        loc_head_dim, loc_hidden, loc_window;
};

/* Checks ast and fills m; returns false (with errors in d) if it is not a
 * valid model. */
bool sema_check(const Ast *ast, Model *m, Diag *d);

/* ---- front.c: the whole front end ---- */

/* Parses and checks d->src into m and s; false if anything was reported. */
bool front_end(Arena *a, Diag *d, Model *m, Stats *s, int size_bits);

/* ---- ir.c: tensors and derived sizes of a Model ---- */

#define IR_MAX_TENSORS 20 /* llama2.c's 14 and 3 biases */

/* One weight tensor, in llama2.c checkpoint order; floats at offset. */
struct Tensor {
    const char *name;  /* C identifier, e.g. "wq" */
    const char *shape; /* for comments: "(layer, dim, heads * head_dim)" */
    uint64_t count;    /* floats */
    uint64_t cols;     /* floats in one row: a matrix's input width */
    uint64_t offset;   /* floats from the start of the weights */
    bool used;         /* false: in the file for llama2.c compatibility only */
};

/* Fills t[] (IR_MAX_TENSORS) and returns how many; *total gets the float
 * count of all tensors.  Needs sizes that ir_stats accepted. */
int ir_tensors(const Model *m, Tensor *t, uint64_t *total);

/* Layers past this would make the generated table of tensors (one entry
 * per layer's tensor) megabytes of C; real models have at most ~128. */
#define IR_MAX_LAYERS 4096

/* One layer's tensor of one kind (or the model's own: layer -1), as the
 * generated code's table (gqa_api.h's gqa_tensor) describes it. */
typedef struct {
    TensorKind kind;
    const char *name; /* the Tensor's: "wq" */
    int64_t layer;
    DType type;
    uint64_t rows, cols, bytes;
    uint64_t offset; /* in the packed weights */
} Slice;

/* The packed weights: ir_tensors' order, each layer's tensor in its type
 * and starting on 4 bytes, the unused RoPE tables as f32 (for an f32
 * model: the llama2.c checkpoint after its header, byte for byte).  The
 * used tensors into *out (an arena array), their count returned; *total
 * gets the packed bytes.  Needs a Model that ir_stats accepted. */
int64_t ir_slices(const Model *m, Arena *a, Slice **out, uint64_t *total);
/* The state's bytes at the start of an instance's arena: its fields and a
 * pointer (8 bytes at most) a tensor, rounded to a line. */
uint64_t ir_state_bytes(int64_t n_slices);
/* Bytes of the activations quantized for products with block-type
 * weights, a prompt block's worth (batch tokens of the widest input):
 * *x8 for Q8_0 and Q4_0 weights, *x8k for Q4_K and Q6_K, each 0 when no
 * matrix has such a type, else rounded to a line.  The block sizes of
 * templates/qdot.c's gq_x8 (a float and 32 int8) and gq_x8k (a float, 16
 * int16 sums, 256 int8). */
#define IR_X8_BLOCK 36
#define IR_X8K_BLOCK 292
void ir_act_bytes(const Model *m, uint64_t batch, uint64_t *x8, uint64_t *x8k);
/* Whether any matrix of m has type t. */
bool ir_has_type(const Model *m, DType t);
/* Bytes of rows x cols of type t (cols a multiple of its block). */
uint64_t ir_type_bytes(DType t, uint64_t rows, uint64_t cols);

struct Stats {
    uint64_t params;            /* weights the forward pass uses */
    uint64_t file_floats;       /* floats in the checkpoint (params + unused rope tables) */
    uint64_t weight_bytes;      /* params, each tensor in its type */
    uint64_t packed_bytes;      /* the packed weights (ir_slices), RoPE tables included */
    int64_t n_slices;           /* tensors of the generated table */
    uint64_t kv_bytes_per_token; /* K and V of one position, every layer, in the cache's type */
    uint64_t kv_bytes;          /* the cache as an instance holds it (full context, or windowed
                                 * layers' rings; whole blocks) */
    uint64_t arena_bytes;       /* state + scratch + KV cache */
    uint64_t flops_per_token;   /* one decoded token at full context */
    uint64_t bytes_per_token;   /* weights + KV read for it at full context */
};

/* Computes every derived size with overflow checks against 64 bits and
 * size_bits (at 64, INT64_MAX: no object is larger); on overflow reports
 * at the field that made it too big.  The arena holds one prompt
 * block of batch tokens (PLAN_BATCH is the largest the plan chooses, so
 * checks made with it hold for every target). */
bool ir_stats(const Model *m, Stats *s, Diag *d, int size_bits, int batch);
/* A type's elements per block (1, 32 or 256) and bytes per block. */
int dtype_block(DType t);
int dtype_block_bytes(DType t);
const char *dtype_name(DType t); /* "f32", "q4_k", ...: the .gqa words */
/* The type named s (dtype_name's words), or -1. */
int dtype_from_name(const char *s);
/* The .gqa key of a kind's type ("token_embd", "attn_q", ...: GGUF's
 * tensor names), or NULL for a kind the dtype block does not name. */
const char *ir_kind_key(TensorKind k);
/* The type of layer's tensor of kind k (layer ignored for the model's
 * own): norms and biases f32, matrices weight_type, unless the dtype block
 * set the kind or its layer. */
DType ir_tensor_type(const Model *m, TensorKind k, int64_t layer);
/* m with every tensor f32 (the float checkpoint converters read and write). */
Model ir_with_f32(const Model *m);
/* Why the generated training step cannot train m (a message naming what
 * it has), or NULL: only RMSNorm + SwiGLU models train. */
const char *train_unsupported(const Model *m);
/* Layers without a sliding window (all of them when window is 0). */
int64_t ir_global_layers(const Model *m);
/* m with kv_heads replaced (for MHA/MQA comparisons and tuning). */
Model ir_with_kv_heads(const Model *m, int64_t kv_heads);
/* RoPE's angle per position of pair i (radians), Llama 3 scaling applied:
 * the one definition behind every way the code gets its angles. */
double ir_rope_freq(const Model *m, int64_t i);

/* ---- shard.c: one rank's share of a model (tensor parallelism) ---- */

/* Where rank `rank` of `ranks` starts in the whole model (gqa_api.h's
 * gqa_shard): its first query head, KV head, FFN hidden unit and
 * vocabulary row. */
typedef struct {
    int ranks, rank;
    int64_t head0, kv_head0, hidden0, vocab0;
} ShardPlan;

/* The vocabulary rows of rank r of ranks: as even as possible, the first
 * vocab % ranks ranks one more. */
int64_t shard_vocab_rows(int64_t vocab, int ranks, int r);
/* NULL when whole splits over ranks (every rule of the split: whole
 * groups of query heads with their KV heads, whole blocks of W2's and
 * Wo's columns, a vocabulary row per rank), else why not. */
const char *shard_refusal(const Model *whole, int ranks, char *why, size_t n);
/* local = whole at rank's shape (heads, kv_heads, hidden, vocab its
 * share; every other field the same) and *sp its offsets; false with the
 * reason and the rank counts that work in why when whole does not split
 * over ranks (or rank is outside [0, ranks)). */
bool ir_shard(const Model *whole, int ranks, int rank, Model *local, ShardPlan *sp, char *why, size_t n);

/* ---- plan.c: Model -> kernel plan ---- */

#define PLAN_MAX_HOLES 128
#define PLAN_SPLIT 8  /* most spans a KV head's positions are cut into (GQ_SPLIT) */
#define PLAN_BATCH 64 /* tokens per prompt block (GQ_BATCH); the arena holds one */
#define PLAN_BATCH_SMALL 16 /* the same on freestanding targets, where memory is scarce */
/* The generated code rounds the KV cache up to whole blocks of 16
 * positions and steps a prompt through pairs of blocks (32), in int: the
 * last position plus 32 must fit (templates/attention.c). */
#define PLAN_MAX_CONTEXT (INT32_MAX - 31)
/* head_dim / 2 RoPE frequencies are constants in the C: past this the
 * list alone is megabytes (real models use 64 to 256). */
#define PLAN_MAX_HEAD_DIM 16384

/* A template hole: a macro the templates use, with its value for this model. */
typedef struct {
    const char *name;  /* e.g. "GQ_GROUP" */
    const char *value; /* C text: "4", "1e-05f" */
} Hole;

typedef enum {
    TARGET_HOSTED,       /* libc, libm, OpenMP when the compiler has it */
    TARGET_FREESTANDING, /* nothing but <stddef.h>, <stdint.h>, <float.h> */
} Target;

/* What the user asked of the generated code beyond the model. */
typedef struct {
    Target target;
    bool embed_weights; /* the weights are compiled in, one object a tensor */
    bool rope_table;    /* RoPE's cos and sin for every position, computed by gqac */
    bool train;         /* also the training step (templates/train.c, PREFIX_train_api) */
    int ranks, rank;    /* tensor parallelism: this rank's share of the model (ranks 0 or 1: whole) */
} CodeOptions;

struct Plan {
    Hole holes[PLAN_MAX_HOLES];
    int n_holes;
    int unroll_limit; /* loops marked gqac:unroll with more trips stay loops */
    Target target;
    const Model *rope_table; /* the model whose RoPE table to emit, or NULL */
    const Model *model;      /* plan_model's: its tensor table below is emitted */
    const Slice *slices;
    int64_t n_slices;
    bool embedded;           /* the tensors are compiled in */
    bool train;              /* train.c follows forward.c */
    int ranks;               /* > 1: model is one rank's share of whole (tensor parallelism) */
    const Model *whole;
    const Slice *whole_slices; /* whole's tensor table (gq_whole_tensors) */
    int64_t n_whole_slices;
    const char *bad; /* the first hole whose value is outside its C type's range, or NULL */
};

/* prefix: a C identifier (cname_check accepted it). */
void plan_model(const Model *m, const char *prefix, CodeOptions opt, Plan *p, Arena *a);
/* A plan for the attention kernel alone (tests, benchmarks). */
void plan_attention(int64_t heads, int64_t kv_heads, int64_t head_dim,
                    int64_t context, DType kv_type, Target target, Plan *p, Arena *a);
const char *plan_hole(const Plan *p, const char *name);
/* NULL when every constant the plan prints is finite and within its C
 * type (int, a signed 64-bit size, uint64_t, float, double), else the
 * first hole that is not: a gqac bug, since sema and ir_stats bound what
 * these come from. */
const char *plan_check(const Plan *p);

/* ---- cname.c: input text that reaches C ---- */

/* A C identifier from a model name: lowercased, other bytes to '_'. */
char *cname_mangle(Arena *a, const char *name);
/* NULL if s is a usable prefix, else why not. */
const char *cname_check(const char *s);
/* s as the body of a C string literal (no quotes): escapes, \?, octal. */
char *cname_escape(Arena *a, const char *s);

/* ---- templates.c (generated by the Makefile from templates/) ---- */

typedef struct {
    const char *name; /* file name, e.g. "attention.c" */
    const char *text;
} Template;

const char *template_get(const char *name);

/* ---- emit_c.c: plan + templates -> C ---- */

/* Whole model: the .c and the .h (header_name is what the .c includes;
 * NULL puts the header's text in the .c, one file for a JIT). */
void emit_c_model(const Plan *p, const char *prefix, const char *header_name, bool with_main,
                  Buf *c, Buf *h);
/* The attention kernel alone, as `void PREFIX_attention(...)` (one
 * token), `PREFIX_attention_prompt(...)` (a block of a prompt's tokens),
 * and `PREFIX_kv_store(...)`, which writes the cache in their layout. */
void emit_c_attention(const Plan *p, const char *prefix, Buf *c);

/* Expands one template: holes from p, gqm_/GQM_ renamed to prefix, loops
 * marked gqac:unroll unrolled up to p->unroll_limit. */
void emit_template(Buf *out, const char *tmpl, const Plan *p, const char *prefix);

/* ---- emit_weights.c: a checkpoint as C ---- */

/* Files of embedded weights: each holds whole tensors, up to about this
 * many floats, so each compiles in seconds. */
#define EMBED_FLOATS_PER_FILE (4u << 20)

/* Reads the llama2.c checkpoint at path, checks it against m, and writes
 * its tensors as C into bufs (one per file; *n_bufs of them, at most
 * max_bufs).  Errors go to d, naming the file. */
bool emit_weights(const Model *m, const char *prefix, const char *header_name, const char *path,
                  Buf *bufs, int max_bufs, int *n_bufs, Diag *d);
/* RoPE's cos and sin for every position of m, as the object gq_rope. */
void emit_rope_table(const Model *m, Buf *c);

/* ---- weights.c: checkpoints the compiler writes ---- */

/* The floats w (ir_tensors' total) as m's llama2.c checkpoint. */
bool weights_write(const Model *m, const float *w, FILE *f);
/* Deterministic random weights for m in llama2.c format. */
bool weights_write_random(const Model *m, uint64_t seed, FILE *f);
/* The same values into out (the checkpoint's float count, ir_tensors'
 * total), for writers of other formats. */
void weights_fill_random(const Model *m, uint64_t seed, float *out);

/* ---- gqa_source.c: a Model as .gqa text ---- */

/* m as .gqa text after comment lines (a NULL-terminated list; any bytes:
 * control bytes become '?'): what gqac import writes, and tune --emit. */
void gqa_source(Buf *b, const Model *m, const char *const *comments);

/* ---- output.c: the files gqac writes ---- */

#define OUTPUT_MAX 260 /* files written together: a model, its header, its weights */

/* Every path writable (runtime/outfile.h: a file, a device or a FIFO, not
 * a directory) and no two the same file; false with why in err. */
bool output_check(const char *const *paths, int n, char *err, size_t errlen);
/* bufs[i] to paths[i]: every path checked before the first byte, each
 * file written beside its target, and all renamed into place, in turn,
 * only once all are whole ("-": standard output).  False with why in
 * err. */
bool output_write(const char *const *paths, const Buf *bufs, int n, char *err, size_t errlen);

/* ---- cache.c: the folder of compiled code; child processes ---- */

#define CACHE_SEED 0xcbf29ce484222325ull
/* Content keys: cache_hash(CACHE_SEED, ...) chained over every input. */
uint64_t cache_hash(uint64_t h, const void *data, size_t n);
uint64_t cache_hash_str(uint64_t h, const char *s); /* the NUL included */
uint64_t cache_hash_strs(uint64_t h, const char *const *s, size_t n); /* a list: compiler flags */
/* The CPU's model and features (Linux; nothing elsewhere): -march=native
 * builds are only for the machine that made them. */
uint64_t cache_hash_cpu(uint64_t h);
/* $GQAC_CACHE, else $XDG_CACHE_HOME/gqac, else ~/.cache/gqac (the home
 * from the user database when HOME is unset), made 0700 if missing; NULL
 * with a message in err when it is not a folder of this user's that no
 * one else can write (gqac runs code from it). */
const char *cache_root(Arena *a, char *err, size_t errlen);
/* mkdir -p (mode 0777 less the umask: for output folders, not the
 * cache); path is modified and restored. */
bool cache_make_dirs(char *path);
/* An entry is built in a fresh private folder beside its final name dir
 * (dir.tmpXXXXXX, made; NULL if it cannot be), sealed with a manifest of
 * its product name (its FNV-1a hash and size; written last), then
 * published: renamed into place, so concurrent runs never see half a
 * build.  publish is also true when a concurrent run published a whole
 * entry first, and replaces an entry that fails cache_check; tmp is gone
 * afterwards in every case. */
char *cache_stage(const char *dir, Arena *a);
bool cache_seal(const char *tmp, const char *name, Arena *a);
bool cache_publish(const char *tmp, const char *dir, const char *name, Arena *a);
/* dir/name is whole: its hash and size are those its manifest records.
 * Checked before an entry's program is run or its object loaded. */
bool cache_check(const char *dir, const char *name, Arena *a);
/* Removes a file or a folder and all it holds (links not followed);
 * errno is kept. */
void cache_discard(const char *path);
/* Writes b to path; on failure no file is left. */
bool cache_write_file(const char *path, const Buf *b);
/* A failed compile's source (model.c, and model.h unless h is NULL) in a
 * fresh folder under $TMPDIR or /tmp: the path of model.c, or "nowhere
 * (why)"; nothing is left when it cannot be written. */
const char *cache_keep_source(const Buf *c, const Buf *h, Arena *a);
/* Runs argv (searched in PATH) to the end: its exit status; CACHE_NOT_RUN
 * with errno set when it could not be started (no such program); -1 when
 * it died by a signal or fork failed.  quiet: its stderr to /dev/null. */
enum { CACHE_NOT_RUN = -2 };
int cache_spawn(char *const argv[], bool quiet);

/* ---- run.c: gqac run ---- */

/* Compiles m (read from model_path) into a cached program and replaces
 * this process with it, passing argv[0..argc); returns only on failure,
 * with an exit status. */
int run_command(const Model *m, const char *model_path, int argc, char **argv, Arena *a);

/* ---- jit.c: generated code compiled and loaded in this process ---- */

/* Where a JIT compilation's time went, in seconds: the whole, and the
 * phases a backend can tell apart (zero where it cannot: tcc does all in
 * one call, cc in a child process). */
typedef struct {
    double total;    /* jit_compile: planning to loaded code */
    double emit;     /* the plan to C */
    double parse;    /* the C to the backend's IR (llvm: clang's front end) */
    double optimize; /* the -O3 passes */
    double codegen;  /* machine code, linked into memory */
} JitPhases;

/* A backend turns a kernel plan into loaded code: each emits C from the
 * plan and compiles it (tcc in memory, cc to a shared object, llvm with
 * clang's libraries and ORC in memory), behind the same functions, so
 * callers never change. */
typedef struct {
    const char *name;
    const char *about; /* one line for --help and reports */
    /* Compiles p (whose prefix is "model") and returns a handle, or NULL
     * with a message in err; a compile error keeps the generated source
     * on disk and names it. */
    void *(*compile)(const Plan *p, Arena *a, char *err, size_t errlen);
    void *(*symbol)(void *handle, const char *name);
    void (*release)(void *handle);
    JitPhases (*phases)(void *handle); /* NULL: only the total is known */
} JitBackend;

extern const JitBackend jit_tcc, jit_cc;
#ifndef GQAC_LLVM
#define GQAC_LLVM 0
#endif
#if GQAC_LLVM
extern const JitBackend jit_llvm; /* built with make LLVM=1 (jit_llvm.c) */
#endif

/* "tcc", "cc" or (where built in) "llvm"; NULL for anything else. */
const JitBackend *jit_backend(const char *name);
/* Why name is not a backend here (an unknown name, or llvm not built
 * in, and how to get it), for a message; NULL when it is one. */
const char *jit_unavailable(const char *name);
/* The backends built in, "tcc, cc or llvm", for usage lines. */
const char *jit_names(void);
/* gqac tune's default: llvm where built in (optimized code, no compiler
 * needed), else cc. */
const char *jit_default(void);

typedef struct JitModel JitModel;
struct gqa_model_api; /* templates/gqa_api.h */

/* Plans and compiles m with b: the model's function table in *api (its
 * version checked), valid until jit_free.  NULL with a message in err.
 * Thread-safe: the tcc backend serializes its compilations (libtcc keeps
 * global state), the cc backend needs no lock. */
JitModel *jit_compile(const Model *m, const JitBackend *b, const struct gqa_model_api **api,
                      char *err, size_t errlen);
/* The same for rank `rank` of `ranks` (compiler/shard.c's split; ranks 1:
 * whole): NULL with ir_shard's reason when m does not split so. */
JitModel *jit_compile_rank(const Model *m, const JitBackend *b, int ranks, int rank,
                           const struct gqa_model_api **api, char *err, size_t errlen);
/* The same with the training step (m trainable: train_unsupported NULL, and
 * f32): both tables, each version checked. */
struct gqa_train_api;
JitModel *jit_compile_train(const Model *m, const JitBackend *b, const struct gqa_model_api **api,
                            const struct gqa_train_api **train, char *err, size_t errlen);
/* How long j took to compile, by phase. */
JitPhases jit_phases(const JitModel *j);
void jit_free(JitModel *j);

/* ---- import.c: gqac import ---- */

/* A .gqa at output ("-": stdout) from a config.json (or a folder with one),
 * a GGUF file or a llama2.c checkpoint; an exit status. */
int import_command(const char *input, const char *output, Arena *a);
/* The model of a weights file, as import would describe it, through the
 * front end; a safetensors file's from the config.json beside it.  0, or
 * -1 with a message in err. */
int import_model(const char *input, Model *m, Arena *a, char *err, size_t errlen);

/* ---- export.c: random weights in other formats ---- */

/* Random weights (weights_fill_random's) of m written to output as format
 * "gguf" or "safetensors", tensors stored as dtype "f32", "f16" or "bf16";
 * an exit status. */
int export_random(const Model *m, uint64_t seed, const char *format, const char *dtype,
                  const char *output);
/* Whether m's dtype block gives some tensor a type other than f32: then
 * export_random writes each tensor in its type, --format bin included. */
bool export_typed(const Model *m);
/* "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k" as a GQR_DT_*, or -1. */
int export_dtype(const char *name);
/* The table the runtime's loaders and writers read, for m's n_weights
 * floats (freqs: its head_dim/2 RoPE frequencies, ir_rope_freq's). */
struct gqa_model_api export_api(const Model *m, Arena *a, const double *freqs);

/* ---- quantize.c: gqac quantize ---- */

typedef struct {
    const char *input, *output, *type; /* type: an export_dtype name */
    const Model *model;                /* --model's, or NULL: import_model's of input */
    const char *keep, *keep_type;      /* comma-separated GGUF tensor names, or NULL; a type */
} QuantizeArgs;

/* input's weights (any format gqr_checkpoint_load reads) written to output
 * as GGUF of type; a GGUF input's tokenizer.* keys go along.  An exit
 * status. */
int quantize_command(const QuantizeArgs *q, Arena *a);

/* ---- tune.c: gqac tune ---- */

/* gqac tune MODEL.gqa FLAGS (argv: the flags after the model): every
 * candidate kv_heads, weight type and cache type compiled, its weights mean-pooled in
 * floats and stored in its types, timed and scored; the report printed
 * and written.  An exit status. */
int tune_command(const Model *m, int argc, char **argv, Arena *a);
/* from's weights src (ir_tensors' layout) as to's, a model that differs
 * only in kv_heads, which divides from's: each K and V head (and bias) of
 * to is the mean of the from heads its group covers. */
void tune_convert(const Model *from, const float *src, const Model *to, float *dst);
/* How a converted variant's K and V heads are made (--init): the mean of
 * its group's heads (tune_convert), the group's first head, or random
 * normal(0, 0.02) with biases 0 (gqac train --random's matrices), seeded. */
enum { TUNE_INIT_MEAN, TUNE_INIT_FIRST, TUNE_INIT_RANDOM, TUNE_INIT_COUNT };
void tune_convert_init(const Model *from, const float *src, const Model *to, float *dst, int init,
                       uint64_t seed);
/* to's packed weights into out (api: to's code, api->weight_bytes): from's
 * floats src (ir_tensors' layout) pooled by tune_convert into pooled (to's
 * float count), then each tensor stored in its type (ggml's reference
 * quantizers for block types) at the offset api's table gives.  to differs
 * from from in kv_heads and types only.  0, or -1 with a message. */
int tune_pack(const Model *from, const float *src, const Model *to, const struct gqa_model_api *api,
              float *pooled, unsigned char *out, Arena *a, char *err, size_t errlen);

/* ---- train_cmd.c: gqac train ---- */

/* gqac train MODEL.gqa FLAGS (argv: the flags after the model): m's f32
 * training step compiled, trained on a text (runtime/train.h) and the
 * weights written.  An exit status. */
int train_command(const Model *m, int argc, char **argv, Arena *a);

/* ---- serve.c: gqac serve ---- */

/* gqac serve MODEL.gqa FLAGS (argv: the flags after the model): m compiled
 * in this process, HTTP completions over one continuous-batching engine
 * until SIGTERM or SIGINT.  An exit status. */
int serve_command(const Model *m, int argc, char **argv, Arena *a);

/* ---- report.c: gqac tune's results as a table, JSON, CSV and SVG ---- */

/* One measured variant of the model: its kv_heads, weight and cache types, and
 * what it costs and loses.  NAN in ppl and kl when there was no eval text. */
typedef struct {
    int kv_heads;
    const char *weights;       /* its matrices' type ("q8_0"), or "mixed"; NULL: not given */
    const char *kv_cache;      /* its KV cache's type ("f16"); NULL: not given */
    bool original;             /* the reference of ppl and KL (one row) */
    double *ms_per_token;      /* median decode latency at each of the report's contexts */
    double kv_bytes_per_token; /* the KV cache's growth per position */
    double kv_bytes_full;      /* the KV cache at the model's full context */
    double weight_bytes;       /* every tensor in its type */
    double bytes_per_token;    /* read per decoded token: weights, and KV at the longest context */
    double memory_bytes;       /* weights plus one instance's arena, as allocated */
    double ppl;                /* teacher-forced perplexity on the eval text */
    double kl;                 /* mean KL(original || variant) per token, nats */
    bool pareto;               /* set by report_mark */
    const char *init;          /* "mean", "first" or "random"; NULL: not converted */
    long uptrain_steps;        /* steps trained after conversion; < 0: not uptrained */
} TuneRow;

typedef struct {
    const char *model_name;  /* the .gqa's model name (any bytes: escape when printing) */
    const char *backend;     /* the JIT backend the timings come from: "cc" or "tcc", not NULL */
    const char *eval_path;   /* NULL when there was no eval text */
    int heads, original_kv;  /* the original model's query and KV heads */
    int n_contexts;          /* >= 1 */
    const int *contexts;     /* the decode contexts timed, ascending */
    int n_rows;
    TuneRow *rows;           /* by kv_heads, descending; one is the original */
    double max_ppl_increase; /* the quality budget as a fraction (0.05 for 5%); < 0: none */
    int recommended;         /* set by report_mark: a row index, or -1 */
    bool init_columns;       /* the rows' init and uptrain_steps shown (--init or --uptrain given) */
} TuneReport;

/* Marks the Pareto-optimal rows and picks the recommendation.  Costs are
 * latency at the longest context and, as quality, perplexity (or, with no
 * eval text, bytes per token: weights and KV): a row is on the front when
 * no other row is at least as good in both and better in one.  The
 * recommendation, with a budget, is the fastest row whose ppl is within it
 * of the original's (ties: fewer bytes per token), which may be the
 * original itself; without a budget or an eval text, none (-1). */
void report_mark(TuneReport *r);
/* The table for a terminal: one row per variant, Pareto rows starred, the
 * recommendation and why (or why there is none) below it. */
void report_table(const TuneReport *r, FILE *out);
/* Files; 0, or -1 with a message naming the path in err. */
int report_json(const TuneReport *r, const char *path, char *err, size_t errlen);
int report_csv(const TuneReport *r, const char *path, char *err, size_t errlen);
/* Latency at the longest context (x) against perplexity (y; bytes per
 * token when there was no eval text), a point per variant labelled with
 * its kv_heads and weights ("kv4 q8_0"), the Pareto front joined, the
 * recommendation ringed. */
int report_svg(const TuneReport *r, const char *path, char *err, size_t errlen);
/* Perplexity (y) against uptraining steps (x), a line per kv_heads, init
 * and weight type through its rows, the original's perplexity dashed. */
int report_uptrain_svg(const TuneReport *r, const char *path, char *err, size_t errlen);

#endif
