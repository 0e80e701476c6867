/*
 * A stand-in for libcuda: the few driver API entry points gitproof's
 * cuda_driver reads, plus the ones a test calls to play a CUDA program
 * (cuInit, cuDevicePrimaryCtxRetain/Release, cuCtxSetCurrent).
 *
 * Built by the tests with `cc -shared -fPIC`; each test loads its own copy,
 * so every copy starts fresh: not initialised, no context.
 * GITPROOF_FAKE_CUDA_DEVICES (read by cuInit) sets the device count (default 2).
 * Device d answers PCI bus id "0000:%02x:00.0" with bus 0x18 + 0x23 * d,
 * lower case as the real driver may, and UUID bytes 0x10 * k + d.
 */
#include <stdio.h>
#include <stdlib.h>

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef struct { unsigned char bytes[16]; } CUuuid;

enum { SUCCESS = 0, INVALID_VALUE = 1, NOT_INITIALIZED = 3, INVALID_DEVICE = 101,
       INVALID_CONTEXT = 201, MAX_DEVICES = 8 };

static int initialized = 0;
static int device_count = 0;
static int init_calls = 0;
static int forced_error = 0;            /* returned by cuCtxGetCurrent when set */
static int primary_refs[MAX_DEVICES];
static char contexts[MAX_DEVICES];      /* a context handle is &contexts[device] */
static __thread CUcontext current = 0;  /* per thread, like the real driver */

static int valid(CUdevice dev) { return dev >= 0 && dev < device_count; }

CUresult cuInit(unsigned int flags) {
    const char *count = getenv("GITPROOF_FAKE_CUDA_DEVICES");
    if (flags != 0) return INVALID_VALUE;
    init_calls++;
    if (!initialized) {
        device_count = count ? atoi(count) : 2;
        if (device_count < 0 || device_count > MAX_DEVICES) device_count = MAX_DEVICES;
        initialized = 1;
    }
    return SUCCESS;
}

CUresult cuDriverGetVersion(int *version) {
    if (!version) return INVALID_VALUE;
    *version = 12040;
    return SUCCESS;
}

CUresult cuCtxGetCurrent(CUcontext *ctx) {
    if (forced_error) return forced_error;
    if (!initialized) return NOT_INITIALIZED;
    *ctx = current;
    return SUCCESS;
}

CUresult cuCtxSetCurrent(CUcontext ctx) {
    if (!initialized) return NOT_INITIALIZED;
    current = ctx;
    return SUCCESS;
}

CUresult cuCtxGetDevice(CUdevice *dev) {
    if (!initialized) return NOT_INITIALIZED;
    if (!current) return INVALID_CONTEXT;
    *dev = (int)((char *)current - contexts);
    return SUCCESS;
}

CUresult cuDeviceGetCount(int *count) {
    if (!initialized) return NOT_INITIALIZED;
    *count = device_count;
    return SUCCESS;
}

CUresult cuDeviceGet(CUdevice *dev, int ordinal) {
    if (!initialized) return NOT_INITIALIZED;
    if (!valid(ordinal)) return INVALID_DEVICE;
    *dev = ordinal;
    return SUCCESS;
}

CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev) {
    if (!initialized) return NOT_INITIALIZED;
    if (!valid(dev)) return INVALID_DEVICE;
    for (int k = 0; k < 16; k++) uuid->bytes[k] = (unsigned char)(0x10 * k + dev);
    return SUCCESS;
}

CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice dev) { return cuDeviceGetUuid_v2(uuid, dev); }

CUresult cuDeviceGetPCIBusId(char *bus_id, int len, CUdevice dev) {
    if (!initialized) return NOT_INITIALIZED;
    if (!valid(dev)) return INVALID_DEVICE;
    if (len < 13) return INVALID_VALUE;
    snprintf(bus_id, (size_t)len, "0000:%02x:00.0", 0x18 + 0x23 * dev);
    return SUCCESS;
}

CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active) {
    if (!initialized) return NOT_INITIALIZED;
    if (!valid(dev)) return INVALID_DEVICE;
    *flags = 0;
    *active = primary_refs[dev] > 0;
    return SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice dev) {
    if (!initialized) return NOT_INITIALIZED;
    if (!valid(dev)) return INVALID_DEVICE;
    primary_refs[dev]++;
    *ctx = &contexts[dev];
    return SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease(CUdevice dev) {
    if (!initialized) return NOT_INITIALIZED;
    if (!valid(dev) || primary_refs[dev] == 0) return INVALID_DEVICE;
    if (--primary_refs[dev] == 0 && current == &contexts[dev]) current = 0;
    return SUCCESS;
}

/* Test controls, not part of the CUDA API. */
int gitproof_fake_init_calls(void) { return init_calls; }
void gitproof_fake_force_error(int code) { forced_error = code; }
