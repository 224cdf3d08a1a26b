#include "tools/train_data.h"
#include <string.h>

// Wired to datasets/ once it lands; until then training refuses to start rather than pretend.
int dt_train_data_open(dt_ctx *ctx, dt_train_data *d, const dt_recipe *r, const dt_tokenizer *tok,
                       const dt_model_config *cfg) {
    (void)tok; (void)cfg;
    memset(d, 0, sizeof *d);
    return dt_fail(ctx, DT_EUNSUPPORTED, "%s: data loading is not available in this build yet", r->recipe_path);
}
int dt_train_data_batch(dt_ctx *ctx, dt_train_data *d, int64_t epoch, int64_t index, dt_batch *out) {
    (void)d; (void)epoch; (void)index; (void)out;
    return dt_fail(ctx, DT_EINTERNAL, "no data");
}
int64_t dt_train_data_val_batches(const dt_train_data *d) { return d->n_val_batches; }
int dt_train_data_val_batch(dt_ctx *ctx, dt_train_data *d, int64_t index, dt_batch *out) {
    return dt_train_data_batch(ctx, d, 0, index, out);
}
void dt_train_data_close(dt_train_data *d) { (void)d; }
