/*
 * train.h: the shape-independent training loop over a generated model's
 * gqa_train_api (gqa_api.h): text to a token stream and batches
 * (dataset.c), and the loop itself with its schedule, clipping, AdamW
 * state, evaluation, resumable checkpoint and logs (train.c).
 *
 * Conventions as in gqr.h: 0 on success, -1 with a message in the
 * caller's err buffer; nothing is printed (progress goes to a callback).
 */
#ifndef GQR_TRAIN_H
#define GQR_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "gqa_api.h"
#include "tokenizer.h"

/* ---- dataset.c: text -> documents -> one token stream -> windows ---- */

/* A token stream: documents (text between lines holding only "%"; a text
 * without such lines is one document), each tokenized alone as BOS + ids +
 * EOS, concatenated. */
typedef struct gqr_data {
    int *tokens;     /* n_tokens ids */
    size_t n_tokens;
    size_t n_docs;
    uint64_t hash;   /* FNV-1a 64 of the ids: a resumed run checks it is given the same data */
} gqr_data;

/* Splits and tokenizes len bytes of text (called name in messages) with tok,
 * whose vocabulary must have vocab_size ids (the model's).  0, or -1: empty
 * text, a vocabulary of another size (both sizes said), no memory. */
int gqr_data_from_text(gqr_data *d, const char *name, const char *text, size_t len,
                       const gqr_tokenizer *tok, int vocab_size, char *err, size_t errlen);
/* The same from the file at path. */
int gqr_data_load(gqr_data *d, const char *path, const gqr_tokenizer *tok, int vocab_size,
                  char *err, size_t errlen);
/* 0 when d holds the seq + 2 tokens a window of seq + 1 at a random offset
 * needs, else -1 ("needs at least N tokens, has M"), name prefixing it. */
int gqr_data_check(const gqr_data *d, const char *name, int seq, char *err, size_t errlen);
/* Safe on a zeroed or freed d. */
void gqr_data_free(gqr_data *d);

/* splitmix64: the batch generator, whose whole state is one integer (a
 * checkpoint keeps it, so a resumed run draws the same batches). */
uint64_t gqr_data_next(uint64_t *rng);
/* batch windows of seq + 1 ids into tokens (batch * (seq + 1) of them),
 * each at an offset uniform in [0, n_tokens - seq - 1), as
 * tools/train_fortune.py's get_batch.  d must pass gqr_data_check. */
void gqr_data_batch(const gqr_data *d, uint64_t *rng, int batch, int seq, int *tokens);
/* Windows of seq + 1 ids at offsets 0, seq, 2 seq, ... (consecutive,
 * non-overlapping predictions, as train_fortune.py's stream_loss): how
 * many there are, at most max (0: all). */
size_t gqr_data_windows(const gqr_data *d, int seq, size_t max);

/* ---- train.c: the loop ---- */

typedef struct gqr_train_opts {
    long steps;          /* the schedule's length */
    int batch, seq;      /* rows of seq positions per step */
    double lr;           /* peak learning rate */
    double min_lr_ratio; /* the cosine ends at lr * this (0.05) */
    long warmup;         /* linear warmup steps */
    double beta1, beta2, eps, weight_decay;
    double clip;         /* global gradient norm limit; <= 0: none */
    uint64_t seed;       /* of the batch generator */
    int threads;         /* < 1: OpenMP's default; not part of a checkpoint */
    long eval_every;     /* evaluate every this many steps and at the end; 0: never */
    size_t eval_windows; /* at most this many windows of the eval text (0: all) */
    long save_every;     /* write the checkpoint every this many steps (0: at the end only) */
    const char *checkpoint; /* where; NULL: none */
} gqr_train_opts;

/* tools/train_fortune.py's defaults: batch 16, lr 2e-3, betas 0.9/0.95,
 * eps 1e-8, weight decay 0.1, clip 1.0, seed 1337, min_lr_ratio 0.05. */
void gqr_train_defaults(gqr_train_opts *o);
/* The learning rate of 0-based step: train_fortune.py's lr_at, exactly. */
double gqr_train_lr(const gqr_train_opts *o, long step);

/* One step's record: the loss CSV's row. */
typedef struct gqr_train_row {
    long step;           /* 1-based: steps done */
    double lr, loss, grad_norm; /* grad_norm: before clipping */
    double tokens_per_s; /* this step's batch * seq over its wall time */
    double eval_loss;    /* NAN when not evaluated at this step */
} gqr_train_row;

typedef struct gqr_train gqr_train; /* the run: parameters, optimizer state, log */

/* A run over model's table (for its tensors' names) and api, with o's
 * options (copied; checkpoint must outlive the run), params initialized
 * from init (api->n_params floats, copied).  0, or -1 with why. */
int gqr_train_new(gqr_train **out, const gqa_model_api *model, const gqa_train_api *api,
                  const gqr_train_opts *o, const float *init, char *err, size_t errlen);
void gqr_train_free(gqr_train *tr);

/* Replaces the run's state (step, generator, params, m, v, log) with the
 * checkpoint at path, checking its magic, version, the model's shape,
 * n_params, the options a resumed run must share, the training data's
 * hash (data may be NULL: not checked) and its checksum.  0, or -1 with
 * what was expected and what was found. */
int gqr_train_resume(gqr_train *tr, const char *path, const gqr_data *data, char *err,
                     size_t errlen);
/* The run's state to path, written whole or not at all. */
int gqr_train_save(const gqr_train *tr, const char *path, char *err, size_t errlen);

/* Called after each step (row: its record); nonzero stops the run there. */
typedef int (*gqr_train_fn)(void *user, const gqr_train_row *row);

/* Steps from the run's step up to until (<= o.steps), batches from data,
 * evaluating on eval (NULL: none) every eval_every steps and at the last
 * step of the schedule, saving the checkpoint every save_every steps and
 * when it stops.  A non-finite loss or gradient stops it before the
 * update: -1, "step N: the gradient of wq (layer 2) is not finite", the
 * params as after step N - 1 and the checkpoint file as last saved.  -1
 * too for a token outside the vocabulary or a checkpoint that cannot be
 * written. */
int gqr_train_run(gqr_train *tr, const gqr_data *data, const gqr_data *eval, long until,
                  gqr_train_fn fn, void *user, char *err, size_t errlen);
/* Mean loss of params over d's windows (gqr_data_windows, eval_windows). */
int gqr_train_eval(gqr_train *tr, const gqr_data *d, double *loss, char *err, size_t errlen);

/* The run's state, read-only: steps done, the n_params parameters, and
 * the log of every step done (*n rows). */
long gqr_train_step(const gqr_train *tr);
/* The step of the checkpoint this run last wrote (o.checkpoint) or
 * resumed from; -1 when none. */
long gqr_train_saved(const gqr_train *tr);
const float *gqr_train_params(const gqr_train *tr);
const gqr_train_row *gqr_train_log(const gqr_train *tr, size_t *n);

/* The log as CSV: step,lr,loss,grad_norm,tokens_per_s,eval_loss (empty
 * when not evaluated). */
int gqr_train_csv(const gqr_train *tr, const char *path, char *err, size_t errlen);
/* Train and eval loss against step as an SVG plot; title (any bytes) on top. */
int gqr_train_svg(const gqr_train *tr, const char *path, const char *title, char *err,
                  size_t errlen);

#endif
