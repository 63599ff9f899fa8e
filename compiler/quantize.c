/*
 * quantize.c: `gqac quantize IN -o OUT.gguf --type T`.  Needs: import.c's
 * model of a weights file (or --model's), the runtime's loader
 * (gqr_checkpoint_load) and GGUF writer (gqr_convert_write_opts).
 * Provides: any weights file gqac reads, rewritten as GGUF of one type,
 * named tensors kept at another, a GGUF input's tokenizer carried along.
 */
#include "gqac.h"
#include "gqr.h"
#include "quant.h"
#include "tensorfile.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* "a,b,c" as an array of its names in *n. */
static const char **split_names(const char *list, int *n, Arena *a) {
    *n = 0;
    if (!list)
        return NULL;
    int cap = 1;
    for (const char *p = list; *p; p++)
        cap += *p == ',';
    const char **names = arena_alloc(a, sizeof *names * (size_t)cap);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len)
            names[(*n)++] = arena_printf(a, "%.*s", (int)len, p);
        p += len + (p[len] == ',');
    }
    return names;
}

/* "OUT: 7 tensors Q8_0, 5 F32; 1234 bytes in, 456 bytes out" */
static void summary(const char *output, const gqr_write_opts *o, size_t bytes_in) {
    struct stat st;
    const char *sep = "";
    printf("%s:", output);
    for (int dt = 0; dt < (int)(sizeof o->counts / sizeof o->counts[0]); dt++)
        if (o->counts[dt]) {
            printf("%s %d tensor%s %s", sep, o->counts[dt], o->counts[dt] == 1 ? "" : "s",
                   gqr_q_type_of(dt)->name);
            sep = ",";
        }
    printf("; %zu bytes in, %lld bytes out\n", bytes_in,
           stat(output, &st) == 0 ? (long long)st.st_size : -1LL);
}

/* The loaded weights written as GGUF; a GGUF input's metadata beside. */
static int write_out(const QuantizeArgs *q, const gqa_model_api *api, const gqr_checkpoint *ck,
                     Arena *a, char *err, size_t errlen) {
    gqr_tensorfile *tf = NULL;
    if (ck->format == GQR_FORMAT_GGUF && gqr_tf_open(&tf, q->input, err, errlen))
        return -1;
    gqr_write_opts o = {.dtype = export_dtype(q->type),
                        .keep_dtype = export_dtype(q->keep_type ? q->keep_type : "f16"),
                        .meta_from = tf};
    o.keep = split_names(q->keep, &o.n_keep, a);
    int rc = gqr_convert_write_opts(q->output, GQR_FORMAT_GGUF, &o, api, ck->weights, err, errlen);
    gqr_tf_close(tf);
    if (!rc)
        summary(q->output, &o, ck->file_bytes);
    return rc;
}

int quantize_command(const QuantizeArgs *q, Arena *a) {
    char err[1024];
    Model imported;
    const Model *m = q->model;
    if (!strcmp(q->output, "-")) {
        fprintf(stderr, "gqac: error: quantize writes a GGUF file, not '-'\n(see gqac --help)\n");
        return EXIT_USAGE;
    }
    if (!m && import_model(q->input, &imported, a, err, sizeof err)) {
        fprintf(stderr, "gqac: error: %s\n", err);
        return EXIT_INPUT;
    }
    m = m ? m : &imported;
    double *freqs = arena_alloc(a, sizeof *freqs * (size_t)(m->head_dim / 2 + 1));
    for (int64_t i = 0; i < m->head_dim / 2; i++)
        freqs[i] = ir_rope_freq(m, i);
    gqa_model_api api = export_api(m, a, freqs);
    gqr_checkpoint ck;
    int rc = gqr_checkpoint_load(&ck, q->input, &api, GQR_LOAD_MMAP, err, sizeof err);
    if (!rc)
        rc = gqr_checkpoint_pack(&ck, &api, err, sizeof err);
    if (!rc)
        rc = write_out(q, &api, &ck, a, err, sizeof err);
    gqr_checkpoint_close(&ck);
    if (rc)
        fprintf(stderr, "gqac: error: %s\n", err);
    return rc ? EXIT_INPUT : EXIT_OK;
}
