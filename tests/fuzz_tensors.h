/*
 * fuzz_tensors.h: what the tensor-file fuzz targets (fuzz_gguf.c,
 * fuzz_safetensors.c) check of every tensor of a file they accept.
 */
#ifndef FUZZ_TENSORS_H
#define FUZZ_TENSORS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "tensorfile.h"

#define CHECK(c) ((c) ? (void)0 : abort())

/* Each tensor lies inside the input, past its first `header` bytes, is
 * found by its name, and reads (its first and last values); a block
 * type's scales are checked whole, as the loader does, and a refusal
 * names the block. */
static void touch_tensors(const gqr_tensorfile *tf, const uint8_t *data, size_t size,
                          size_t header) {
    for (int i = 0; i < gqr_tf_count(tf); i++) {
        const gqr_tensor *t = gqr_tf_tensor(tf, i);
        CHECK(t->data >= data + header && t->n_bytes <= size &&
              t->data - data <= (long)(size - t->n_bytes));
        uint64_t bytes; /* block types: whole blocks */
        CHECK(!gqr_q_row_bytes(t->dtype, t->n_elems, &bytes, NULL, 0) && bytes == t->n_bytes);
        CHECK(gqr_tf_find(tf, t->name) == t);
        char why[256] = "";
        if (gqr_q_check_row(t->dtype, t->data, t->n_elems, why, sizeof why))
            CHECK(gqr_q_is_block(t->dtype) && strstr(why, "block") != NULL);
        float v[4];
        uint64_t n = t->n_elems < 4 ? t->n_elems : 4;
        gqr_tf_read_f32(t, 0, n, v);
        gqr_tf_read_f32(t, t->n_elems - n, n, v);
    }
}

#endif
