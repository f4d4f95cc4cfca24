/* A lock-heavy task queue: threads take tasks one at a time from a shared
 * counter under lock 1, compute, store the result in the task's slot, and
 * count the claim under lock 2. Verified: every result right, every task
 * claimed exactly once.   taskq [tasks=2048] [work=2000] */
#include "app.h"

static long tasks, work;
static uint64_t *next, *claims, *results;

static uint64_t compute(long task)
{
    uint64_t x = (uint64_t)task + 1;
    long i;

    for (i = 0; i < work; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
    }
    return x;
}

static void worker(int tid, int nthreads)
{
    long task;

    (void)tid;
    (void)nthreads;
    for (;;) {
        app_ok(ftsvm_lock_acquire(1));
        task = (long)(*next)++;
        app_ok(ftsvm_lock_release(1));
        if (task >= tasks) {
            break;
        }
        results[task] = compute(task);
        app_ok(ftsvm_lock_acquire(2));
        claims[task]++;
        app_ok(ftsvm_lock_release(2));
    }
    app_ok(ftsvm_barrier());
}

int main(int argc, char **argv)
{
    double start, seconds;
    char size[32];
    int verified = 1;
    long i;

    app_name = "taskq";
    app_ok(ftsvm_init(&argc, &argv));
    tasks = app_arg(argc, argv, 1, 2048, 1, 1 << 22);
    work  = app_arg(argc, argv, 2, 2000, 0, 1 << 30);
    next    = app_alloc(4096);
    claims  = app_alloc((size_t)tasks * sizeof(uint64_t));
    results = app_alloc((size_t)tasks * sizeof(uint64_t));
    app_ok(ftsvm_barrier());
    start = app_now();
    app_run(worker);
    seconds = app_now() - start;
    if (ftsvm_node() == 0) {
        for (i = 0; i < tasks; i++) {
            if (claims[i] != 1 || results[i] != compute(i)) {
                verified = 0;
                fprintf(stderr, "task %ld: %llu claims, result %s\n", i,
                        (unsigned long long)claims[i], results[i] == compute(i) ? "right" : "wrong");
                break;
            }
        }
    }
    snprintf(size, sizeof(size), "%ld/%ld", tasks, work);
    return app_finish(size, seconds, verified);
}
