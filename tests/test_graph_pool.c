// The activation-gradient pool stays bounded when sequence lengths vary from step to step (unpacked
// chat data, short packed rows), and allocates nothing new when they repeat.
#include <stdlib.h>
#include "autograd/ops.h"
#include "tests/test_util.h"

enum { D = 48, T_MAX = 96 };

static size_t pool_bytes(const dt_graph *g) {
    size_t s = 0;
    for (int i = 0; i < g->n_blocks; i++) s += g->blocks[i].bytes;
    return s;
}

// One training-like step on a (1, T, D) input: a few element-wise ops whose gradients come from the
// pool, then the backward from dy = 1.
static int step(dt_graph *g, int64_t T, dt_tensor **xout) {
    dt_graph_reset(g);
    int64_t shape[3] = {1, T, D};
    dt_tensor *x = dt_graph_tensor(g, 3, shape); // (1, T, D)
    if (!x) return 1;
    for (int64_t i = 0; i < T * D; i++) dt_f32(x)[i] = (float)(i % 7) * 0.25f;
    x->requires_grad = true;
    if (xout) *xout = x;
    dt_tensor *h = dt_mul(g, x, x);   // (1, T, D)
    dt_tensor *h2 = dt_add(g, h, x);  // (1, T, D)
    dt_tensor *y = dt_mul(g, h2, h);  // (1, T, D)
    if (!y) return 1;
    float *dy = dt_graph_scratch(g, (size_t)(T * D) * sizeof(float)); // (T*D)
    if (!dy) return 1;
    for (int64_t i = 0; i < T * D; i++) dy[i] = 1.0f;
    return dt_graph_backward_from(g, y, dy);
}

int main(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_graph g;
    if (dt_graph_init(&ctx, &g, dt_backend_cpu(), 1 << 22)) { TEST_FAIL("pool_init", "%s", ctx.msg); TEST_EXIT(); }

    // The longest step first: its pool is the reference size P.
    if (step(&g, T_MAX, NULL)) { TEST_FAIL("pool_first_step", "%s", ctx.msg); TEST_EXIT(); }
    size_t P = pool_bytes(&g);

    // Fixed length: the same blocks serve every step.
    int blocks = g.n_blocks;
    bool same = true;
    for (int s = 0; s < 10 && same; s++) {
        if (step(&g, T_MAX, NULL)) { TEST_FAIL("pool_fixed", "%s", ctx.msg); TEST_EXIT(); }
        same = g.n_blocks == blocks && pool_bytes(&g) == P;
    }
    TEST_CHECK("pool_fixed_length_no_growth", same, "pool went from %d blocks (%zu bytes) to %d (%zu)", blocks, P,
               g.n_blocks, pool_bytes(&g));

    // Varying lengths: before the size-class pool, every new length added blocks of its exact size and
    // none were ever freed (the pool grew to many times P over these steps).
    uint64_t r = 88172645463325252ull;
    size_t worst = 0;
    int worst_blocks = 0;
    for (int s = 0; s < 300; s++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        int64_t T = 1 + (int64_t)(r % T_MAX);
        if (step(&g, T, NULL)) { TEST_FAIL("pool_varying", "%s", ctx.msg); TEST_EXIT(); }
        if (pool_bytes(&g) > worst) worst = pool_bytes(&g);
        if (g.n_blocks > worst_blocks) worst_blocks = g.n_blocks;
    }
    TEST_CHECK("pool_varying_length_bounded", worst <= 2 * P && worst_blocks <= 4 * blocks,
               "pool peaked at %zu bytes in %d blocks; one longest step needs %zu bytes in %d blocks", worst,
               worst_blocks, P, blocks);

    // The gradients are still right: d/dx of (x*x + x) * x*x = 4x^3 + 3x^2.
    dt_tensor *x = NULL;
    if (step(&g, 5, &x)) { TEST_FAIL("pool_grad", "%s", ctx.msg); TEST_EXIT(); }
    double err = 0;
    for (int64_t i = 0; i < 5 * D; i++) {
        double v = dt_f32(x)[i], want = 4 * v * v * v + 3 * v * v, d = x->grad[i] - want;
        if (d * d > err) err = d * d;
    }
    TEST_CHECK("pool_reused_blocks_give_right_gradients", err < 1e-8, "worst squared error %g", err);
    dt_graph_free(&g);
    TEST_EXIT();
}
