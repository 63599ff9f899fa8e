/*
 * shard.c: one rank's share of a model, for tensor parallelism.  Needs: a
 * Model that ir_stats accepted.  Provides: the rules of the split (which
 * rank counts work, and why the others do not) and a rank's local Model,
 * which plan.c plans as it would a whole one.
 *
 * A rank holds whole groups: its query heads and the KV heads they read
 * (one KV head replicated on several ranks when ranks > kv_heads), a
 * slice of the FFN's hidden units, and a slice of the vocabulary.  Wo and
 * W2 are cut by columns, so those cuts must fall on their blocks.
 */
#include "gqac.h"

#include <stdio.h>
#include <string.h>

int64_t shard_vocab_rows(int64_t vocab, int ranks, int r) {
    return vocab / ranks + (r < vocab % ranks);
}

/* The largest block of kind k's types over every layer: a column cut
 * must fall on every layer's blocks. */
static int widest_block(const Model *m, TensorKind k, DType *type) {
    int most = 1;
    *type = DT_F32;
    for (int64_t l = 0; l < m->layers; l++) {
        DType t = ir_tensor_type(m, k, l);
        if (dtype_block(t) > most) {
            most = dtype_block(t);
            *type = t;
        }
    }
    return most;
}

const char *shard_refusal(const Model *m, int n, char *why, size_t len) {
    DType t2, to;
    int b2 = widest_block(m, TK_W2, &t2), bo = widest_block(m, TK_WO, &to);
    if (n < 1)
        snprintf(why, len, "the rank count must be at least 1");
    else if (m->heads % n != 0 || (n <= m->kv_heads ? m->kv_heads % n != 0 : n % m->kv_heads != 0))
        snprintf(why, len, "%lld query heads and %lld KV heads do not split into whole groups over %d ranks",
                 (long long)m->heads, (long long)m->kv_heads, n);
    else if (m->hidden % n != 0 || (m->hidden / n) % b2 != 0)
        snprintf(why, len, "the FFN's %lld hidden units do not split over %d ranks into whole blocks of "
                 "w2's type (%s, %d)", (long long)m->hidden, n, dtype_name(t2), b2);
    else if ((m->heads / n * m->head_dim) % bo != 0)
        snprintf(why, len, "wo's %lld columns (heads x head_dim) do not split over %d ranks into whole "
                 "blocks of its type (%s, %d)", (long long)(m->heads * m->head_dim), n, dtype_name(to), bo);
    else if (m->vocab < n)
        snprintf(why, len, "a vocabulary of %lld rows has fewer than one row for each of %d ranks",
                 (long long)m->vocab, n);
    else
        return NULL;
    return why;
}

/* "1, 2, 4": every rank count from 1 to heads that splits m. */
static void counts_that_work(const Model *m, char *out, size_t len) {
    char scratch[256];
    size_t at = 0;
    out[0] = '\0';
    for (int64_t n = 1; n <= m->heads && at < len; n++)
        if (!shard_refusal(m, (int)n, scratch, sizeof scratch)) {
            int w = snprintf(out + at, len - at, "%s%lld", at ? ", " : "", (long long)n);
            at += w > 0 ? (size_t)w : 0;
        }
}

bool ir_shard(const Model *whole, int ranks, int rank, Model *local, ShardPlan *sp, char *why, size_t n) {
    char reason[256], counts[512];
    if (shard_refusal(whole, ranks, reason, sizeof reason)) {
        counts_that_work(whole, counts, sizeof counts);
        snprintf(why, n, "%d ranks: %s (rank counts that work: %s)", ranks, reason, counts);
        return false;
    }
    if (rank < 0 || rank >= ranks) {
        snprintf(why, n, "rank %d is not one of the %d ranks (0 to %d)", rank, ranks, ranks - 1);
        return false;
    }
    *local = *whole;
    local->heads = whole->heads / ranks;
    local->kv_heads = ranks <= whole->kv_heads ? whole->kv_heads / ranks : 1;
    local->hidden = whole->hidden / ranks;
    local->vocab = shard_vocab_rows(whole->vocab, ranks, rank);
    *sp = (ShardPlan){ranks, rank, rank * local->heads, 0, rank * local->hidden, 0};
    /* replicated KV: ranks / kv_heads ranks share each KV head */
    sp->kv_head0 = ranks <= whole->kv_heads ? rank * local->kv_heads : rank / (ranks / whole->kv_heads);
    for (int r = 0; r < rank; r++)
        sp->vocab0 += shard_vocab_rows(whole->vocab, ranks, r);
    return true;
}
