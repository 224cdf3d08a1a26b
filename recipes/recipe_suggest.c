// "Did you mean ...?": the closest known name by edit distance.
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "recipes/recipe_internal.h"

// Optimal-string-alignment distance, ignoring case: insertions, deletions, substitutions and swaps of
// two neighbouring letters each cost 1 ("lerning" and "learning" are 1 apart, "lraning" too).
static size_t distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    if (n > 64 || m > 64) return (size_t)-1;   // no key is this long; avoids a big table
    size_t d[65][65];
    for (size_t i = 0; i <= n; i++) d[i][0] = i;
    for (size_t j = 0; j <= m; j++) d[0][j] = j;
    for (size_t i = 1; i <= n; i++) {
        for (size_t j = 1; j <= m; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            size_t best = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[n][m];
}

const char *dt_rsuggest(const char *word, const char *const *names, int n) {
    // Close enough: up to a third of the word's letters wrong, and always allow 2 typos.
    size_t len = strlen(word), limit = len / 3 > 2 ? len / 3 : 2;
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (int i = 0; i < n; i++) {
        size_t d = distance(word, names[i]);
        if (d < best_d) { best_d = d; best = names[i]; }
    }
    // A candidate as long as the typo distance itself is no suggestion ("x" -> "r").
    if (!best || best_d > limit || best_d >= strlen(best)) return NULL;
    return best;
}
