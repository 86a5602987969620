/* Per-device readings: identity, load, memory, power, clocks, errors, processes. */
#include "shim.h"

#include <stdio.h>
#include <string.h>

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t dev, char *name, unsigned int length) {
    ENTER(dev, 1);
    OUT(name);
    char full[NVML_DEVICE_NAME_V2_BUFFER_SIZE];
    if (m) snprintf(full, sizeof full, "%.60s MIG %s", g->name, m->profile);
    else snprintf(full, sizeof full, "%s", g->name);
    nvmlReturn_t rc = strlen(full) < length ? NVML_SUCCESS : NVML_ERROR_INSUFFICIENT_SIZE;
    if (rc == NVML_SUCCESS) strcpy(name, full);
    UNLOCK();
    return rc;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t dev, char *uuid, unsigned int length) {
    ENTER(dev, 1);
    OUT(uuid);
    const char *value = m ? m->uuid : g->uuid;
    nvmlReturn_t rc = strlen(value) < length ? NVML_SUCCESS : NVML_ERROR_INSUFFICIENT_SIZE;
    if (rc == NVML_SUCCESS) strcpy(uuid, value);
    UNLOCK();
    return rc;
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t dev, nvmlPciInfo_t *pci) {
    ENTER(dev, 0);
    OUT(pci);
    memset(pci, 0, sizeof *pci);
    snprintf(pci->busId, sizeof pci->busId, "%s", g->bus_id);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%s", g->bus_id + 4);
    unsigned domain = 0, bus = 0, device = 0;
    sscanf(g->bus_id, "%x:%x:%x", &domain, &bus, &device);
    pci->domain = domain, pci->bus = bus, pci->device = device;
    pci->pciDeviceId = 0x233010DE;  /* H100 SXM5 */
    UNLOCK();
    return NVML_SUCCESS;
}

GETTER(nvmlDeviceGetArchitecture, nvmlDeviceArchitecture_t, 0, g->arch)
GETTER(nvmlDeviceGetIndex, unsigned int, 0, (unsigned)dev->gpu)
GETTER(nvmlDeviceGetMinorNumber, unsigned int, 0, g->minor)
GETTER(nvmlDeviceGetPowerUsage, unsigned int, 0, (unsigned)wave_at(&g->power, dev->gpu))
GETTER(nvmlDeviceGetEnforcedPowerLimit, unsigned int, 0, (unsigned)g->power_limit)
GETTER(nvmlDeviceGetCurrentClocksEventReasons, unsigned long long, 0, g->throttle)
GETTER(nvmlDeviceGetPcieReplayCounter, unsigned int, 0, g->pcie_replay)
GETTER(nvmlDeviceGetFanSpeed, unsigned int, 0, g->fan)

static unsigned clamp_percent(double v) {
    return v < 0 ? 0 : v > 100 ? 100 : (unsigned)(v + 0.5);
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t dev, nvmlUtilization_t *util) {
    ENTER(dev, 0);  /* neither a MIG device nor a GPU in MIG mode has one: NotSupported */
    OUT(util);
    if (g->nmig > 0) {
        UNLOCK();
        return NVML_ERROR_NOT_SUPPORTED;
    }
    util->gpu = clamp_percent(wave_at(&g->util, dev->gpu));
    util->memory = g->mem_util;
    UNLOCK();
    return NVML_SUCCESS;
}

static void memory(nvmlDevice_t dev, gpu_t *g, mig_t *m, unsigned long long out[3]) {
    (void)dev;
    out[0] = m ? m->memory_total : g->memory_total;
    out[1] = m ? m->memory_used : g->memory_used;
    out[2] = m ? 0 : g->memory_reserved;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t dev, nvmlMemory_t *mem) {
    ENTER(dev, 1);
    OUT(mem);
    unsigned long long v[3];
    memory(dev, g, m, v);
    mem->total = v[0], mem->used = v[1] + v[2], mem->free = v[0] - v[1] - v[2];  /* v1: used
        counts what the driver reserves */
    UNLOCK();
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t dev, nvmlMemory_v2_t *mem) {
    ENTER(dev, 1);
    OUT(mem);
    if (mem->version != nvmlMemory_v2) {
        UNLOCK();
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    }
    unsigned long long v[3];
    memory(dev, g, m, v);
    mem->total = v[0], mem->used = v[1], mem->reserved = v[2], mem->free = v[0] - v[1] - v[2];
    UNLOCK();
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t dev, nvmlTemperatureSensors_t sensor,
                                      unsigned int *temp) {
    ENTER(dev, 0);
    OUT(temp);
    nvmlReturn_t rc = sensor == NVML_TEMPERATURE_GPU ? NVML_SUCCESS : NVML_ERROR_INVALID_ARGUMENT;
    *temp = (unsigned)(wave_at(&g->temp, dev->gpu) + 0.5);
    UNLOCK();
    return rc;
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t dev, unsigned long long *energy) {
    ENTER(dev, 0);
    OUT(energy);
    double now = shim_now();
    if (g->energy_at > 0) g->energy_mj += wave_at(&g->power, dev->gpu) * (now - g->energy_at);
    g->energy_at = now;
    *energy = (unsigned long long)g->energy_mj;
    UNLOCK();
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t dev, nvmlClockType_t type, unsigned int *clock) {
    ENTER(dev, 0);
    OUT(clock);
    nvmlReturn_t rc = NVML_SUCCESS;
    if (type == NVML_CLOCK_SM || type == NVML_CLOCK_GRAPHICS) *clock = g->sm_clock;
    else if (type == NVML_CLOCK_MEM) *clock = g->mem_clock;
    else rc = NVML_ERROR_NOT_SUPPORTED;
    UNLOCK();
    return rc;
}

nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t dev, unsigned long long *mask) {
    return nvmlDeviceGetCurrentClocksEventReasons(dev, mask);
}

nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t dev, int count, nvmlFieldValue_t *values) {
    ENTER(dev, 0);
    OUT(values);
    for (int i = 0; i < count; i++) {
        nvmlFieldValue_t *v = &values[i];
        v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
        for (int j = 0; j < g->nfield; j++) {
            if (g->field_id[j] != v->fieldId) continue;
            v->nvmlReturn = NVML_SUCCESS;
            if (v->fieldId == NVML_FI_DEV_MEMORY_TEMP) {  /* a temperature is an unsigned int */
                v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
                v->value.uiVal = (unsigned)g->field_value[j];
            } else {
                v->valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
                v->value.ullVal = g->field_value[j];
            }
        }
    }
    UNLOCK();
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t dev, nvmlMemoryErrorType_t type,
                                         nvmlEccCounterType_t counter, unsigned long long *count) {
    ENTER(dev, 0);
    OUT(count);
    nvmlReturn_t rc = type < 2 && counter < 2 ? NVML_SUCCESS : NVML_ERROR_INVALID_ARGUMENT;
    if (rc == NVML_SUCCESS) *count = g->ecc[type][counter];
    UNLOCK();
    return rc;
}

nvmlReturn_t nvmlDeviceGetRetiredPages(nvmlDevice_t dev, nvmlPageRetirementCause_t cause,
                                       unsigned int *count, unsigned long long *addresses) {
    ENTER(dev, 0);
    OUT(count);
    unsigned have = cause < 2 ? g->retired[cause] : 0, room = *count;
    *count = have;
    nvmlReturn_t rc = room < have || (have && !addresses) ? NVML_ERROR_INSUFFICIENT_SIZE
                                                          : NVML_SUCCESS;
    for (unsigned i = 0; rc == NVML_SUCCESS && i < have; i++) addresses[i] = 0x1000ULL * (i + 1);
    UNLOCK();
    return rc;
}

nvmlReturn_t nvmlDeviceGetRemappedRows(nvmlDevice_t dev, unsigned int *corr, unsigned int *unc,
                                       unsigned int *pending, unsigned int *failed) {
    ENTER(dev, 0);
    OUT(corr && unc && pending && failed);
    *corr = g->rows[0], *unc = g->rows[1], *pending = g->rows[2], *failed = g->rows[3];
    UNLOCK();
    return NVML_SUCCESS;
}

/* The processes of a GPU, or of one MIG device (those in its GPU instance). */
static nvmlReturn_t processes(gpu_t *g, mig_t *m, unsigned *count, nvmlProcessInfo_t *infos) {
    unsigned have = 0, room = *count;
    for (int i = 0; i < g->nproc; i++) {
        const proc_t *p = &g->proc[i];
        if (m && p->gi != m->gi) continue;
        if (infos && have < room) {
            infos[have].pid = p->pid, infos[have].usedGpuMemory = p->used;
            infos[have].gpuInstanceId = p->gi, infos[have].computeInstanceId = p->ci;
        }
        have++;
    }
    *count = have;
    return have == 0 || (infos && have <= room) ? NVML_SUCCESS : NVML_ERROR_INSUFFICIENT_SIZE;
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t dev, unsigned int *count,
                                                     nvmlProcessInfo_t *infos) {
    ENTER(dev, 1);
    OUT(count);
    nvmlReturn_t rc = processes(g, m, count, infos);
    UNLOCK();
    return rc;
}

nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t dev, unsigned int *count,
                                                      nvmlProcessInfo_t *infos) {
    ENTER(dev, 1);  /* a headless inference node runs no graphics processes */
    OUT(count);
    (void)infos;
    *count = 0;
    UNLOCK();
    return NVML_SUCCESS;
}
