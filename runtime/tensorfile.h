/*
 * tensorfile.h: tensor files of other tools, read and written.  GGUF (v2,
 * v3) and safetensors, one file or a sharded set behind its
 * model.safetensors.index.json; tensors of F32, F16 or BF16, and in GGUF
 * also ggml's block-quantized Q4_0, Q8_0, Q4_K and Q6_K (quant.h).
 *
 * Readers map the files read-only and check every count, length and
 * offset against the bytes there are before using it, so a hostile file
 * gets a message, never a crash.  Integers and floats are decoded from
 * their little-endian bytes, so big-endian hosts read the same files.
 * Functions that can fail return 0, or -1 with a message in err (errlen
 * bytes) naming the file, what was expected and what was found.  Nothing
 * prints and nothing exits.
 */
#ifndef GQR_TENSORFILE_H
#define GQR_TENSORFILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "fail.h"

/* Element types.  F32 and F16 are also GGUF's type ids; GGUF's BF16 is 30.
 * The block types (quant.h: ggml's quantized formats) come from GGUF
 * files only; gqr_q_from_ggml maps ggml's ids to these. */
enum {
    GQR_DT_F32 = 0, GQR_DT_F16 = 1, GQR_DT_BF16 = 2,
    GQR_DT_Q4_0 = 3, GQR_DT_Q8_0 = 4, GQR_DT_Q4_K = 5, GQR_DT_Q6_K = 6
};

/* File formats. */
enum { GQR_TF_GGUF = 1, GQR_TF_SAFETENSORS = 2 };

typedef struct gqr_tensor {
    const char *name;
    int dtype;                 /* GQR_DT_* */
    int n_dims;                /* 0 (a scalar, safetensors only) to 4 */
    uint64_t dims[4];          /* row-major, outermost first: a Linear weight is {out, in} */
    uint64_t n_elems;
    const unsigned char *data; /* n_bytes inside a mapped file, little-endian */
    uint64_t n_bytes;
} gqr_tensor;

/* A directory of tensors from one or more mapped files, plus (GGUF) its
 * metadata. */
typedef struct gqr_tensorfile gqr_tensorfile;

/* Opens a GGUF file, a .safetensors file, or a model.safetensors.index.json
 * (and then every shard it names, beside it), told apart by gqr_tf_probe;
 * a file that is none of them is refused with what its first bytes are.
 * *out is NULL after a failure. */
int gqr_tf_open(gqr_tensorfile **out, const char *path, char *err, size_t errlen);
/* The same for one file (not an index) in memory, called name in messages;
 * buf must outlive the directory. */
int gqr_tf_open_memory(gqr_tensorfile **out, const void *buf, size_t size, const char *name,
                       char *err, size_t errlen);
/* The format (GQR_TF_*) that size bytes at p, the start of a file called
 * name, are, or 0: GGUF by its magic "GGUF" (or a name ending in .gguf),
 * an index by JSON with a "weight_map" (or an object in a .json file),
 * safetensors by the '{' that opens its header at byte 8 (or a name ending
 * in .safetensors).  A name claims a format so that its reader says what
 * is wrong with a damaged file. */
int gqr_tf_probe(const unsigned char *p, size_t size, const char *name);
/* What the first bytes of a file no reader accepts look like, for a
 * message: "its first bytes are 47 47 55 58 03 00 00 00 ("GGUX....")". */
void gqr_tf_describe(const unsigned char *p, size_t size, char *out, size_t outlen);
/* Unmaps and frees everything; NULL is harmless. */
void gqr_tf_close(gqr_tensorfile *tf);
/* GQR_TF_GGUF or GQR_TF_SAFETENSORS. */
int gqr_tf_format(const gqr_tensorfile *tf);
/* The number of tensors. */
int gqr_tf_count(const gqr_tensorfile *tf);
/* Tensor i in file order (a sharded set: shards in index order), or NULL
 * when i is out of [0, count). */
const gqr_tensor *gqr_tf_tensor(const gqr_tensorfile *tf, int i);
/* The tensor called name, or NULL; a binary search. */
const gqr_tensor *gqr_tf_find(const gqr_tensorfile *tf, const char *name);
/* Elements [first, first + n) of t, which must lie within t, as host
 * floats in dst; a block type's blocks dequantized. */
void gqr_tf_read_f32(const gqr_tensor *t, uint64_t first, uint64_t n, float *dst);
/* "F32", "F16", "BF16", "Q8_0", ..., or "?" for anything else. */
const char *gqr_tf_dtype_name(int dtype);
/* Bytes per element of a GQR_DT_* type of one element per block, 0 for
 * a block type (quant.h's gqr_q_row_bytes sizes those) and anything else. */
int gqr_tf_dtype_size(int dtype);
/* safetensors: the string the first file's __metadata__ maps key to, or
 * NULL (absent, or not safetensors). */
const char *gqr_st_meta(const gqr_tensorfile *tf, const char *key);

/* ---- half.c: IEEE binary16 and bfloat16, exactly ---- */

/* Every pattern, subnormals, infinities and NaN included. */
float gqr_f16_to_f32(uint16_t h);
/* Rounds to nearest, ties to even; overflow gives infinity; NaN stays NaN
 * (quiet, sign kept). */
uint16_t gqr_f32_to_f16(float f);
/* Exact: the top half of the float. */
float gqr_bf16_to_f32(uint16_t h);
/* Rounds to nearest, ties to even; NaN stays NaN (quiet, sign kept). */
uint16_t gqr_f32_to_bf16(float f);

/* ---- gguf.c: GGUF metadata ---- */

/* GGUF's value type ids. */
enum {
    GQR_GGUF_UINT8 = 0, GQR_GGUF_INT8 = 1, GQR_GGUF_UINT16 = 2, GQR_GGUF_INT16 = 3,
    GQR_GGUF_UINT32 = 4, GQR_GGUF_INT32 = 5, GQR_GGUF_FLOAT32 = 6, GQR_GGUF_BOOL = 7,
    GQR_GGUF_STRING = 8, GQR_GGUF_ARRAY = 9, GQR_GGUF_UINT64 = 10, GQR_GGUF_INT64 = 11,
    GQR_GGUF_FLOAT64 = 12
};

typedef struct gqr_gguf_value gqr_gguf_value;

/* The value of key, or NULL (absent, or not a GGUF file). */
const gqr_gguf_value *gqr_gguf_get(const gqr_tensorfile *tf, const char *key);
/* The number of metadata pairs (0 for safetensors). */
int gqr_gguf_count(const gqr_tensorfile *tf);
/* Pair i in file order: its value, with its key in *key; NULL when i is
 * out of range. */
const gqr_gguf_value *gqr_gguf_at(const gqr_tensorfile *tf, int i, const char **key);
/* The value's GQR_GGUF_* type; GQR_GGUF_ARRAY for arrays. */
int gqr_gguf_type(const gqr_gguf_value *v);
/* Any integer or bool in *out (a uint64 above INT64_MAX fails); -1 if
 * not one. */
int gqr_gguf_int(const gqr_gguf_value *v, int64_t *out);
/* A float32, float64 or integer in *out; -1 if none of these. */
int gqr_gguf_float(const gqr_gguf_value *v, double *out);
/* A string, NUL-terminated, its length in *len (may be NULL); NULL if not
 * a string. */
const char *gqr_gguf_string(const gqr_gguf_value *v, size_t *len);
/* An array's length, 0 for anything else. */
uint64_t gqr_gguf_array_len(const gqr_gguf_value *v);
/* An array's element type, -1 for anything else. */
int gqr_gguf_array_type(const gqr_gguf_value *v);
/* Element i of a string array, as gqr_gguf_string; NULL if not one or out
 * of range. */
const char *gqr_gguf_array_string(const gqr_gguf_value *v, uint64_t i, size_t *len);
/* Element i of a numeric array, as gqr_gguf_float; -1 if not one or out
 * of range. */
int gqr_gguf_array_float(const gqr_gguf_value *v, uint64_t i, double *out);
/* Element i of an integer or bool array, as gqr_gguf_int. */
int gqr_gguf_array_int(const gqr_gguf_value *v, uint64_t i, int64_t *out);

/* ---- writers ---- */

/* Tensors and metadata gathered in memory, then written to a path through
 * a temporary file renamed over it.  The setters return 0, or -1 (nothing
 * changed) for: out of memory, a name or key given twice, a bad shape or
 * dtype, or a setter of the other format. */
typedef struct gqr_tf_writer gqr_tf_writer;

/* A writer of GQR_TF_GGUF (version 3) or GQR_TF_SAFETENSORS; NULL if out
 * of memory or format is neither. */
gqr_tf_writer *gqr_tf_writer_new(int format);
/* A tensor of n_dims dims (row-major, outermost first; GGUF 1 to 4,
 * nonzero; safetensors 0 to 4) whose prod(dims) values, host floats, are
 * stored converted to dtype.  Copies name and values. */
int gqr_tf_writer_add(gqr_tf_writer *w, const char *name, int dtype, int n_dims,
                      const uint64_t *dims, const float *values);
/* GGUF: a tensor of any GQR_DT_* dtype, a block type included, whose
 * n_bytes of encoded little-endian bytes (a block type's made by quant.h's
 * gqr_q_quantize_row) are copied from bytes.  n_bytes must be what
 * prod(dims) elements take, and a row (the innermost dim) whole blocks. */
int gqr_tf_writer_add_bytes(gqr_tf_writer *w, const char *name, int dtype, int n_dims,
                            const uint64_t *dims, const void *bytes, uint64_t n_bytes);
/* GGUF metadata.  general.alignment (a power of two, as a uint32) also
 * sets the writer's alignment, 32 otherwise. */
int gqr_tf_writer_set_string(gqr_tf_writer *w, const char *key, const char *s);
int gqr_tf_writer_set_u32(gqr_tf_writer *w, const char *key, uint32_t v);
int gqr_tf_writer_set_f32(gqr_tf_writer *w, const char *key, float v);
int gqr_tf_writer_set_bool(gqr_tf_writer *w, const char *key, int v);
/* Any integer type (GQR_GGUF_UINT8 .. INT64, or BOOL); v must fit it. */
int gqr_tf_writer_set_int(gqr_tf_writer *w, const char *key, int type, int64_t v);
int gqr_tf_writer_set_f64(gqr_tf_writer *w, const char *key, double v);
/* n strings; lens[i] bytes of s[i], or strlen when lens is NULL. */
int gqr_tf_writer_set_string_array(gqr_tf_writer *w, const char *key, int n,
                                   const char *const *s, const size_t *lens);
int gqr_tf_writer_set_f32_array(gqr_tf_writer *w, const char *key, int n, const float *v);
int gqr_tf_writer_set_i32_array(gqr_tf_writer *w, const char *key, int n, const int32_t *v);
/* A value as gqr_gguf_get gave it (of another file), copied exactly. */
int gqr_tf_writer_set_value(gqr_tf_writer *w, const char *key, const gqr_gguf_value *v);
/* safetensors: an entry of the header's __metadata__ string map. */
int gqr_tf_writer_set_meta(gqr_tf_writer *w, const char *key, const char *value);
/* Writes one file at path. */
int gqr_tf_writer_write(gqr_tf_writer *w, const char *path, char *err, size_t errlen);
/* safetensors: index_path's index json and, beside it, the tensors in
 * order in shards model-0000i-of-0000N.safetensors of at most
 * max_shard_bytes of data each (a bigger tensor gets a shard to itself). */
int gqr_tf_writer_write_sharded(gqr_tf_writer *w, const char *index_path,
                                uint64_t max_shard_bytes, char *err, size_t errlen);
/* NULL is harmless. */
void gqr_tf_writer_free(gqr_tf_writer *w);

/* ---- shared by tensorfile.c, gguf.c and safetensors.c only ---- */

typedef struct gqr_gguf_kv gqr_gguf_kv;
typedef struct gqr_tf_wtensor gqr_tf_wtensor;

/* A file format: how its files are recognized, read and written.  The
 * table of them is in tensorfile.c; each format's file defines its own. */
typedef struct gqr_tf_codec {
    int format;        /* GQR_TF_* */
    int maps_others;   /* open maps more files beside path (an index's shards) */
    /* Whether size bytes at p, a file called name, are this format. */
    int (*probe)(const unsigned char *p, size_t size, const char *name);
    /* Reads size bytes at p (path's, or memory called path) into tf's
     * directory, not yet indexed by name unless maps_others. */
    int (*open)(gqr_tensorfile *tf, const char *path, const unsigned char *p, size_t size,
                char *err, size_t errlen);
    /* Frees what open kept beside the tensors (metadata); NULL: nothing. */
    void (*release)(gqr_tensorfile *tf);
    int (*write)(const gqr_tf_writer *w, const char *path, char *err, size_t errlen);
    /* Frees what the format's own setters kept in w; NULL: nothing. */
    void (*writer_release)(gqr_tf_writer *w);
} gqr_tf_codec;

extern const gqr_tf_codec gqr_gguf_codec;        /* gguf.c */
extern const gqr_tf_codec gqr_st_codec;          /* safetensors.c */
extern const gqr_tf_codec gqr_st_index_codec;    /* safetensors.c: a sharded set */

struct gqr_tensorfile {
    int format;
    const gqr_tf_codec *codec;   /* what opened it, NULL before */
    int n_tensors, cap_tensors;
    gqr_tensor *tensors;
    const gqr_tensor **by_name;  /* sorted by name, built last */
    int n_maps;
    void **maps;                 /* mmap'd files, with their sizes */
    size_t *map_sizes;
    int n_kv;                    /* GGUF metadata, file order, and sorted by key */
    gqr_gguf_kv *kv;
    const gqr_gguf_kv **kv_by_key;
    void *st_meta;               /* safetensors: the first __metadata__ (a cJSON object) */
};

/* A tensor being written: values already converted, little-endian. */
struct gqr_tf_wtensor {
    char *name;
    int dtype, n_dims;
    uint64_t dims[4];
    unsigned char *bytes;
    uint64_t n_bytes;
};

struct gqr_tf_writer {
    int format;
    const gqr_tf_codec *codec;   /* the format's writer */
    int n, cap;
    gqr_tf_wtensor *t;
    unsigned char *kv;           /* GGUF: the pairs, serialized */
    size_t kv_len, kv_cap;
    int n_kv;
    char **keys;                 /* to refuse a key given twice */
    uint32_t alignment;
    void *meta;                  /* safetensors: a cJSON object, or NULL */
};

/* Appends a tensor named by len bytes at name (copied); 0 or -1 (out of
 * memory). */
int gqr_tf_push(gqr_tensorfile *tf, const gqr_tensor *t, const char *name, size_t len,
                char *err, size_t errlen);
/* Tensors [from, n_tensors) of one file starting at base: -1 when two
 * overlap. */
int gqr_tf_check_overlap(gqr_tensorfile *tf, int from, const unsigned char *base,
                         const char *file, char *err, size_t errlen);
/* Maps path read-only, recording the mapping in tf for close. */
int gqr_tf_map(gqr_tensorfile *tf, const char *path, const unsigned char **buf, size_t *size,
               char *err, size_t errlen);
/* Sorts the tensors by name for gqr_tf_find; -1 on a duplicate name. */
int gqr_tf_index(gqr_tensorfile *tf, const char *file, char *err, size_t errlen);

/* Whether s ends with suffix. */
int gqr_tf_ends_with(const char *s, const char *suffix);

static inline uint16_t gqr_tf_le16(const unsigned char *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t gqr_tf_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t gqr_tf_le64(const unsigned char *p) {
    return (uint64_t)gqr_tf_le32(p) | (uint64_t)gqr_tf_le32(p + 4) << 32;
}
static inline void gqr_tf_put16(unsigned char *p, uint16_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static inline void gqr_tf_put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> 8 * i);
}
static inline void gqr_tf_put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> 8 * i);
}

#endif
