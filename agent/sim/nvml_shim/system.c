/* Library lifecycle, device handles, XID events, MIG devices and GPM samples. */
#include "shim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int shim_initialised;
struct nvmlDevice_st gpu_handle[MAX_GPUS], mig_handle[MAX_GPUS][MAX_MIG];

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    pthread_mutex_lock(&shim_mu);
    shim_refresh();
    nvmlReturn_t rc = !shim.loaded ? NVML_ERROR_DRIVER_NOT_LOADED : (nvmlReturn_t)shim.init_error;
    for (int i = 0; i < MAX_GPUS; i++) {
        gpu_handle[i] = (struct nvmlDevice_st){i, -1};
        for (int j = 0; j < MAX_MIG; j++) mig_handle[i][j] = (struct nvmlDevice_st){i, j};
    }
    if (rc == NVML_SUCCESS) shim_initialised++;
    UNLOCK();
    return rc;
}

nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }

nvmlReturn_t nvmlShutdown(void) {
    pthread_mutex_lock(&shim_mu);
    nvmlReturn_t rc = shim_initialised ? NVML_SUCCESS : NVML_ERROR_UNINITIALIZED;
    if (shim_initialised) shim_initialised--;
    UNLOCK();
    return rc;
}

const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH: return "Argument version mismatch";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    nvmlReturn_t rc = shim_call(__func__);
    if (rc != NVML_SUCCESS) return rc;
    if (!version || strlen(shim.driver) >= length) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(version, shim.driver);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    nvmlReturn_t rc = shim_call(__func__);
    if (rc == NVML_SUCCESS && count) *count = (unsigned)shim.ngpu;
    return count ? rc : NVML_ERROR_INVALID_ARGUMENT;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *dev) {
    nvmlReturn_t rc = shim_call(__func__);
    if (rc != NVML_SUCCESS) return rc;
    if (!dev || index >= (unsigned)shim.ngpu) return NVML_ERROR_INVALID_ARGUMENT;
    *dev = &gpu_handle[index];
    return shim_lost(&shim.gpu[index]) ? NVML_ERROR_GPU_IS_LOST : NVML_SUCCESS;
}

/* --- XID events: the scenario's list only grows; each set reads it from a cursor. ---------- */
struct nvmlEventSet_st { int registered[MAX_GPUS]; int cursor; };

nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
    nvmlReturn_t rc = shim_call(__func__);
    if (rc != NVML_SUCCESS) return rc;
    *set = calloc(1, sizeof **set);
    return *set ? NVML_SUCCESS : NVML_ERROR_MEMORY;
}

nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t dev, unsigned long long types,
                                      nvmlEventSet_t set) {
    ENTER(dev, 0);
    OUT(set);
    if (types & nvmlEventTypeXidCriticalError) set->registered[dev->gpu] = 1;
    UNLOCK();
    return NVML_SUCCESS;
}

static int next_event(nvmlEventSet_t set, nvmlEventData_t *data) {
    if (set->cursor > shim.nxid) set->cursor = shim.nxid;  /* the file was rewritten shorter */
    while (set->cursor < shim.nxid) {
        int i = set->cursor++;
        unsigned gpu = shim.xid_gpu[i];
        if (gpu >= MAX_GPUS || !set->registered[gpu]) continue;
        memset(data, 0, sizeof *data);
        data->device = &gpu_handle[gpu];
        data->eventType = nvmlEventTypeXidCriticalError;
        data->eventData = shim.xid[i];
        data->gpuInstanceId = data->computeInstanceId = 0xFFFFFFFF;
        return 1;
    }
    return 0;
}

nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int ms) {
    double until = shim_now() + ms / 1000.0;
    for (;;) {
        nvmlReturn_t rc = shim_call(__func__);
        if (rc != NVML_SUCCESS) return rc;
        if (!set || !data) return NVML_ERROR_INVALID_ARGUMENT;
        pthread_mutex_lock(&shim_mu);
        int got = next_event(set, data);
        UNLOCK();
        if (got) return NVML_SUCCESS;
        if (shim_now() >= until) return NVML_ERROR_TIMEOUT;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
}

nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    free(set);
    return NVML_SUCCESS;
}

/* --- MIG ------------------------------------------------------------------------------------ */
nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t dev, unsigned int *current, unsigned int *pending) {
    ENTER(dev, 0);
    OUT(current && pending);
    *current = *pending = g->nmig > 0 ? NVML_DEVICE_MIG_ENABLE : NVML_DEVICE_MIG_DISABLE;
    UNLOCK();
    return NVML_SUCCESS;
}

GETTER(nvmlDeviceGetMaxMigDeviceCount, unsigned int, 0, g->nmig > 0 ? MAX_MIG : 0)
GETTER(nvmlDeviceIsMigDeviceHandle, unsigned int, 1, m != NULL)

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t dev, unsigned int index,
                                                 nvmlDevice_t *mig) {
    ENTER(dev, 0);
    OUT(mig);
    nvmlReturn_t rc = NVML_SUCCESS;
    if (g->nmig == 0) rc = NVML_ERROR_INVALID_ARGUMENT;  /* MIG mode off */
    else if (index >= MAX_MIG) rc = NVML_ERROR_INVALID_ARGUMENT;
    else if (!g->mig[index].present) rc = NVML_ERROR_NOT_FOUND;
    else *mig = &mig_handle[dev->gpu][index];
    UNLOCK();
    return rc;
}

/* An id of a MIG device; InvalidArgument on a whole GPU, as NVML answers. */
#define MIG_ID(name, field)                                                 \
    nvmlReturn_t name(nvmlDevice_t dev, unsigned int *id) {                \
        ENTER(dev, 1);                                                      \
        OUT(id);                                                            \
        nvmlReturn_t rc = m ? NVML_SUCCESS : NVML_ERROR_INVALID_ARGUMENT;   \
        if (m) *id = m->field;                                              \
        UNLOCK();                                                           \
        return rc;                                                          \
    }

MIG_ID(nvmlDeviceGetGpuInstanceId, gi)
MIG_ID(nvmlDeviceGetComputeInstanceId, ci)

nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t mig, nvmlDevice_t *dev) {
    ENTER(mig, 1);
    OUT(dev);
    nvmlReturn_t rc = m ? NVML_SUCCESS : NVML_ERROR_INVALID_ARGUMENT;
    if (m) *dev = &gpu_handle[mig->gpu];
    UNLOCK();
    return rc;
}

/* --- GPM: a sample holds the metrics at the time it was taken; a pair >= 100 ms apart reads. */
struct nvmlGpmSample_st { int taken, gpu, gi, n; double at; unsigned id[MAX_GPM]; double value[MAX_GPM]; };

nvmlReturn_t nvmlGpmQueryDeviceSupport(nvmlDevice_t dev, nvmlGpmSupport_t *support) {
    ENTER(dev, 0);
    OUT(support);
    nvmlReturn_t rc = support->version == NVML_GPM_SUPPORT_VERSION
                          ? NVML_SUCCESS : NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    if (rc == NVML_SUCCESS) support->isSupportedDevice = (unsigned)g->gpm_supported;
    UNLOCK();
    return rc;
}

nvmlReturn_t nvmlGpmSampleAlloc(nvmlGpmSample_t *sample) {
    nvmlReturn_t rc = shim_call(__func__);
    if (rc != NVML_SUCCESS) return rc;
    if (!sample) return NVML_ERROR_INVALID_ARGUMENT;
    *sample = calloc(1, sizeof **sample);
    return *sample ? NVML_SUCCESS : NVML_ERROR_MEMORY;
}

nvmlReturn_t nvmlGpmSampleFree(nvmlGpmSample_t sample) {
    free(sample);
    return NVML_SUCCESS;
}

static nvmlReturn_t take(nvmlDevice_t dev, int gi, nvmlGpmSample_t sample, const char *name) {
    gpu_t *g;
    mig_t *m;
    nvmlReturn_t rc = shim_enter(dev, name, 0, &g, &m);
    if (rc != NVML_SUCCESS) return rc;
    const gpm_t *src = g->gpm_supported && gi < 0 ? &g->gpm : NULL;
    for (int i = 0; g->gpm_supported && gi >= 0 && i < g->nmig; i++)
        if (g->mig[i].gi == (unsigned)gi) src = &g->mig[i].gpm;
    if (!sample) rc = NVML_ERROR_INVALID_ARGUMENT;
    else if (!src) rc = g->gpm_supported ? NVML_ERROR_NOT_FOUND : NVML_ERROR_NOT_SUPPORTED;
    else {
        sample->taken = 1, sample->gpu = dev->gpu, sample->gi = gi, sample->at = shim_now();
        sample->n = src->n;
        for (int i = 0; i < src->n; i++)
            sample->id[i] = src->id[i], sample->value[i] = wave_at(&src->value[i], dev->gpu);
    }
    UNLOCK();
    return rc;
}

nvmlReturn_t nvmlGpmSampleGet(nvmlDevice_t dev, nvmlGpmSample_t sample) {
    return take(dev, -1, sample, __func__);
}

nvmlReturn_t nvmlGpmMigSampleGet(nvmlDevice_t dev, unsigned int gi, nvmlGpmSample_t sample) {
    return take(dev, (int)gi, sample, __func__);
}

nvmlReturn_t nvmlGpmMetricsGet(nvmlGpmMetricsGet_t *get) {
    nvmlReturn_t rc = shim_call(__func__);
    if (rc != NVML_SUCCESS) return rc;
    if (!get) return NVML_ERROR_INVALID_ARGUMENT;
    if (get->version != NVML_GPM_METRICS_GET_VERSION) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    const struct nvmlGpmSample_st *a = get->sample1, *b = get->sample2;
    if (!a || !b || !a->taken || !b->taken || a->gpu != b->gpu || a->gi != b->gi ||
        b->at - a->at < 0.1 || get->numMetrics > NVML_GPM_METRIC_MAX)
        return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned i = 0; i < get->numMetrics; i++) {
        nvmlGpmMetric_t *metric = &get->metrics[i];
        metric->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
        for (int j = 0; j < b->n; j++)
            if (b->id[j] == metric->metricId)
                metric->nvmlReturn = NVML_SUCCESS, metric->value = b->value[j];
    }
    return NVML_SUCCESS;
}
