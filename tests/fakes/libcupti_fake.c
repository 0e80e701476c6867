/*
 * A stand-in for libcupti: the activity API calls gitproof's cupti module
 * makes, plus controls a test calls to play a GPU program (fake_cupti_*).
 *
 * Records are laid out like CUPTI's: packed, 8-byte aligned, with the
 * kernel (CUpti_ActivityKernel*) and memcpy/memset prefixes at the offsets
 * the real headers give. Each record here takes a 256-byte slot, which only
 * cuptiActivityGetNextRecord needs to know, as with the real library.
 * Like the real one: a kernel's launch time ("queued") is written only
 * after cuptiActivityEnableLatencyTimestamps(1); a record still in flight
 * (fake_cupti_in_flight) stops cuptiActivityGetNextRecord with
 * CUPTI_ERROR_INVALID_KIND, and an unforced flush holds back the records
 * while one is pending.
 * Built by the tests with `cc -shared -fPIC`; each test loads its own copy.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int CUptiResult;
typedef void (*RequestFunc)(uint8_t **buffer, size_t *size, size_t *max_records);
typedef void (*CompleteFunc)(void *ctx, uint32_t stream, uint8_t *buffer, size_t size, size_t valid);

enum { SUCCESS = 0, INVALID_PARAMETER = 1, MAX_LIMIT_REACHED = 12, INVALID_KIND = 21,
       INSUFFICIENT_PRIVILEGES = 35, KIND_INVALID = 0,
       SLOT = 256, MAX_PENDING = 4096,
       KIND_MEMCPY = 1, KIND_MEMSET = 2, KIND_CONCURRENT_KERNEL = 10 };

static RequestFunc on_request;
static CompleteFunc on_complete;
static int enabled[64];
static int refuse_enable = 0;   /* fake_cupti_refuse: cuptiActivityEnable answers this code */
static uint8_t pending[MAX_PENDING][SLOT];
static int npending = 0;
static size_t dropped = 0;
static size_t flushes = 0;
static uint32_t last_flag = 99;
static int latency = 0;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

CUptiResult cuptiGetVersion(uint32_t *version) { *version = 130500; return SUCCESS; }

CUptiResult cuptiGetTimestamp(uint64_t *timestamp) { *timestamp = now_ns(); return SUCCESS; }

CUptiResult cuptiGetResultString(CUptiResult result, const char **str) {
    *str = result == INSUFFICIENT_PRIVILEGES ? "CUPTI_ERROR_INSUFFICIENT_PRIVILEGES" : "CUPTI_ERROR_UNKNOWN";
    return SUCCESS;
}

CUptiResult cuptiActivityRegisterCallbacks(RequestFunc request, CompleteFunc complete) {
    const char *log = getenv("FAKE_CUPTI_LOG");  /* which processes traced: one pid a line */
    if (!request || !complete) return INVALID_PARAMETER;
    if (log) {
        FILE *f = fopen(log, "a");
        if (f) { fprintf(f, "%d\n", (int)getpid()); fclose(f); }
    }
    on_request = request;
    on_complete = complete;
    return SUCCESS;
}

CUptiResult cuptiActivityEnable(int kind) {
    if (refuse_enable) return refuse_enable;
    if (kind < 0 || kind >= 64) return INVALID_PARAMETER;
    enabled[kind] = 1;
    return SUCCESS;
}

CUptiResult cuptiActivityDisable(int kind) {
    if (kind < 0 || kind >= 64) return INVALID_PARAMETER;
    enabled[kind] = 0;
    return SUCCESS;
}

#ifndef NO_LATENCY_TIMESTAMPS  /* older CUPTI: no launch times */
CUptiResult cuptiActivityEnableLatencyTimestamps(uint8_t enable) { latency = enable; return SUCCESS; }
#endif

static int in_flight_pending(void) {
    for (int i = 0; i < npending; i++) {
        int kind;
        memcpy(&kind, pending[i], 4);
        if (kind == KIND_INVALID) return 1;
    }
    return 0;
}

CUptiResult cuptiActivityFlushAll(uint32_t flag) {
    last_flag = flag;
    flushes++;
    if (npending == 0 || !on_request) return SUCCESS;
    if (!(flag & 1) && in_flight_pending()) return SUCCESS;  /* unforced: held back */
    while (npending > 0) {  /* as many buffers as the records need */
        uint8_t *buffer = 0;
        size_t size = 0, max_records = 0;
        on_request(&buffer, &size, &max_records);
        int fit = buffer ? (int)(size / SLOT) : 0;
        if (fit == 0) { dropped += (size_t)npending; npending = 0; break; }
        int n = npending < fit ? npending : fit;
        memcpy(buffer, pending, (size_t)n * SLOT);
        memmove(pending, pending[n], (size_t)(npending - n) * SLOT);
        npending -= n;
        on_complete(0, 0, buffer, size, (size_t)n * SLOT);
    }
    return SUCCESS;
}

CUptiResult cuptiActivityGetNextRecord(uint8_t *buffer, size_t valid, void **record) {
    uint8_t *next = *record ? (uint8_t *)*record + SLOT : buffer;
    int kind;
    if (next + SLOT > buffer + valid) return MAX_LIMIT_REACHED;
    memcpy(&kind, next, 4);
    if (kind == KIND_INVALID) return INVALID_KIND;
    *record = next;
    return SUCCESS;
}

CUptiResult cuptiActivityGetNumDroppedRecords(void *ctx, uint32_t stream, size_t *count) {
    (void)ctx; (void)stream;
    *count = dropped;
    dropped = 0;
    return SUCCESS;
}

/* -- controls for the tests ------------------------------------------------------------ */

static uint8_t *slot(int kind) {
    if (kind != KIND_INVALID && !enabled[kind]) return 0;
    if (npending >= MAX_PENDING) { dropped++; return 0; }
    uint8_t *r = pending[npending++];
    memset(r, 0, SLOT);
    memcpy(r, &kind, 4);
    return r;
}

/* A kernel launched at `queued` that ran on `device` from `start` to `end`. */
void fake_cupti_kernel_at(uint32_t device, const char *name, uint64_t queued, uint64_t start, uint64_t end) {
    uint8_t *r = slot(KIND_CONCURRENT_KERNEL);
    if (!r) return;
    if (!latency) queued = 0;
    memcpy(r + 16, &start, 8);
    memcpy(r + 24, &end, 8);
    memcpy(r + 40, &device, 4);
    memcpy(r + 104, &name, sizeof name);
    memcpy(r + 120, &queued, 8);
}

/* A kernel launched now that ran at once for `duration` ns. */
void fake_cupti_kernel(uint32_t device, const char *name, uint64_t duration) {
    uint64_t start = now_ns();
    fake_cupti_kernel_at(device, name, start, start, start + duration);
}

/* A record of work still running: the buffer holding it stops there. */
void fake_cupti_in_flight(void) { slot(KIND_INVALID); }

static void *flusher(void *arg) { (void)arg; cuptiActivityFlushAll(1); return 0; }

/* A forced flush from another thread, as CUPTI's own worker thread delivers buffers. */
void fake_cupti_flush_in_thread(void) {
    pthread_t thread;
    if (pthread_create(&thread, 0, flusher, 0) == 0) pthread_join(thread, 0);
}

static void transfer(int kind, uint32_t device, uint64_t bytes) {
    uint8_t *r = slot(kind);
    if (!r) return;
    uint64_t start = now_ns(), end = start + 1000;
    memcpy(r + 8, &bytes, 8);
    memcpy(r + 16, &start, 8);
    memcpy(r + 24, &end, 8);
    memcpy(r + 32, &device, 4);
}

void fake_cupti_memcpy(uint32_t device, uint64_t bytes) { transfer(KIND_MEMCPY, device, bytes); }
void fake_cupti_memset(uint32_t device, uint64_t bytes) { transfer(KIND_MEMSET, device, bytes); }
void fake_cupti_garbage(void) { uint8_t *r = slot(KIND_CONCURRENT_KERNEL); if (r) memset(r + 16, 0xff, 32); }
void fake_cupti_untimed(uint32_t device) { uint8_t *r = slot(KIND_CONCURRENT_KERNEL); if (r) memcpy(r + 40, &device, 4); }
void fake_cupti_refuse(int code) { refuse_enable = code; }
void fake_cupti_drop(size_t n) { dropped += n; }
int fake_cupti_enabled(int kind) { return enabled[kind]; }
size_t fake_cupti_flushes(void) { return flushes; }
uint32_t fake_cupti_last_flag(void) { return last_flag; }
