/* An NVML stand-in: GPUs read from a JSON scenario ($NVML_SHIM_CONFIG), served through the
 * C ABI of NVIDIA's own nvml.h, so the unmodified nvidia-ml-py binding loads it. */
#ifndef NVML_SHIM_H
#define NVML_SHIM_H

#define NVML_NO_UNVERSIONED_FUNC_DEFS
#include <nvml.h>
#include <pthread.h>

#define MAX_GPUS 16
#define MAX_MIG 7      /* an A100/H100 holds at most seven MIG devices */
#define MAX_PROCS 64
#define MAX_FIELDS 16
#define MAX_GPM 32
#define MAX_CALLS 16   /* calls told to fail or hang, per GPU */
#define MAX_XIDS 1024

/* A value that moves: base + amp * sin(t / period + gpu index), t seconds since load. */
typedef struct { double base, amp, period; } wave_t;

typedef struct { char name[64]; int code; double hang; } call_rule_t;

typedef struct { unsigned pid, gi, ci; unsigned long long used; } proc_t;

typedef struct { int n; unsigned id[MAX_GPM]; wave_t value[MAX_GPM]; } gpm_t;

typedef struct {
    int present;
    unsigned gi, ci;
    char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE], profile[32];
    unsigned long long memory_total, memory_used;
    gpm_t gpm;
} mig_t;

typedef struct {
    int present, lost, gpm_supported, nmig, nproc, nfield, ncall;
    char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE], uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
    char bus_id[NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE];
    unsigned arch, minor, mem_util, sm_clock, mem_clock, pcie_replay, fan;
    wave_t util, temp, power;
    unsigned long long memory_total, memory_used, memory_reserved, power_limit, throttle;
    unsigned long long ecc[2][2];           /* [corrected, uncorrected][volatile, aggregate] */
    unsigned retired[2], rows[4];           /* pages by cause; corr, unc, pending, failed */
    unsigned field_id[MAX_FIELDS];
    unsigned long long field_value[MAX_FIELDS];
    proc_t proc[MAX_PROCS];
    mig_t mig[MAX_MIG];
    gpm_t gpm;
    call_rule_t call[MAX_CALLS];
    double energy_mj, energy_at;            /* integrated from the power draw */
    double lost_after;                      /* seconds after load it falls off the bus (<0: never) */
} gpu_t;

typedef struct {
    int loaded, init_error, ngpu, nxid, ncall;
    char driver[NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE];
    gpu_t gpu[MAX_GPUS];
    unsigned xid_gpu[MAX_XIDS], xid[MAX_XIDS];
    call_rule_t call[MAX_CALLS];            /* "*" matches every call */
    double t0;
} scenario_t;

/* A device handle: a whole GPU (slot < 0) or one of its MIG devices. */
struct nvmlDevice_st { int gpu, slot; };


extern scenario_t shim;
extern pthread_mutex_t shim_mu;
extern struct nvmlDevice_st gpu_handle[MAX_GPUS], mig_handle[MAX_GPUS][MAX_MIG];

double shim_now(void);
void shim_refresh(void);                       /* re-read the scenario if its file changed */
double wave_at(const wave_t *w, int index);
int shim_lost(const gpu_t *g);                 /* fallen off the bus, now or after a while */
nvmlReturn_t shim_call(const char *name);      /* a call with no device: init state and rules */
/* Enter a device call: locks shim_mu on success (release with UNLOCK); returns the GPU. */
nvmlReturn_t shim_enter(nvmlDevice_t dev, const char *name, int mig_ok, gpu_t **gpu, mig_t **mig);

#define UNLOCK() pthread_mutex_unlock(&shim_mu)
#define ENTER(dev, mig_ok)                                               \
    gpu_t *g; mig_t *m;                                                  \
    nvmlReturn_t rc_ = shim_enter(dev, __func__, mig_ok, &g, &m);        \
    if (rc_ != NVML_SUCCESS) return rc_;                                 \
    (void)m
/* A call that answers one value of the device (a MIG device too if mig_ok); the prototype in
 * nvml.h checks the type. */
#define GETTER(name, type, mig_ok, value)               \
    nvmlReturn_t name(nvmlDevice_t dev, type *out) {    \
        ENTER(dev, mig_ok);                             \
        OUT(out);                                       \
        *out = (value);                                 \
        UNLOCK();                                       \
        return NVML_SUCCESS;                            \
    }
#define OUT(ptr) do { if (!(ptr)) { UNLOCK(); return NVML_ERROR_INVALID_ARGUMENT; } } while (0)

#endif
