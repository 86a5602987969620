/* The scenario: read from $NVML_SHIM_CONFIG, re-read when the file changes, and the checks
 * every call goes through (initialised? GPU lost? told to fail or hang?). */
#include "shim.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

scenario_t shim;
pthread_mutex_t shim_mu = PTHREAD_MUTEX_INITIALIZER;
static struct timespec seen_mtime;
static off_t seen_size = -1;
static double checked_at = -1;

double shim_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

double wave_at(const wave_t *w, int index) {
    if (w->amp == 0 || w->period <= 0) return w->base;
    return w->base + w->amp * sin((shim_now() - shim.t0) / w->period + index);
}

static double num(const cJSON *obj, const char *key, double dflt) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(item) ? item->valuedouble : dflt;
}

static void text(const cJSON *obj, const char *key, char *out, size_t size, const char *dflt) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    snprintf(out, size, "%s", cJSON_IsString(item) ? item->valuestring : dflt);
}

static wave_t wave(const cJSON *obj, const char *key, double dflt) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    wave_t w = {dflt, 0, 0};
    if (cJSON_IsNumber(item)) w.base = item->valuedouble;
    if (cJSON_IsObject(item)) {
        w.base = num(item, "base", dflt);
        w.amp = num(item, "amp", 0);
        w.period = num(item, "period", 30);
    }
    return w;
}

/* {"nvmlDeviceGetFanSpeed": 3} fails a call with an NVML error; "hang" maps names to seconds. */
static int calls(const cJSON *obj, call_rule_t *out) {
    int n = 0;
    const cJSON *item;
    const cJSON *fail = cJSON_GetObjectItemCaseSensitive(obj, "fail");
    const cJSON *hang = cJSON_GetObjectItemCaseSensitive(obj, "hang");
    cJSON_ArrayForEach(item, fail) {
        if (n == MAX_CALLS || !cJSON_IsNumber(item)) continue;
        snprintf(out[n].name, sizeof out[n].name, "%s", item->string);
        out[n].code = item->valueint, out[n++].hang = 0;
    }
    cJSON_ArrayForEach(item, hang) {
        if (n == MAX_CALLS || !cJSON_IsNumber(item)) continue;
        snprintf(out[n].name, sizeof out[n].name, "%s", item->string);
        out[n].code = 0, out[n++].hang = item->valuedouble;
    }
    return n;
}

/* {"2": 42.5, "3": {"base": 30, "amp": 10, "period": 20}}: GPM metric id -> value (a wave) */
static void gpm(const cJSON *obj, gpm_t *out) {
    const cJSON *item, *all = cJSON_GetObjectItemCaseSensitive(obj, "gpm");
    out->n = 0;
    cJSON_ArrayForEach(item, all) {
        if (out->n == MAX_GPM) break;
        out->id[out->n] = (unsigned)atoi(item->string);
        out->value[out->n++] = wave(all, item->string, 0);
    }
}

static void mig(const cJSON *obj, gpu_t *g) {
    const cJSON *item;
    memset(g->mig, 0, sizeof g->mig);
    g->nmig = 0;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(obj, "mig")) {
        if (g->nmig == MAX_MIG) break;
        mig_t *m = &g->mig[g->nmig++];
        m->present = 1;
        m->gi = (unsigned)num(item, "gi", g->nmig), m->ci = (unsigned)num(item, "ci", 0);
        text(item, "uuid", m->uuid, sizeof m->uuid, "MIG-00000000-0000-0000-0000-000000000000");
        text(item, "profile", m->profile, sizeof m->profile, "1g.10gb");
        m->memory_total = (unsigned long long)num(item, "memory_total", 10737418240.0);
        m->memory_used = (unsigned long long)num(item, "memory_used", 0);
        gpm(item, &m->gpm);
    }
}

static void processes(const cJSON *obj, gpu_t *g) {
    const cJSON *item;
    g->nproc = 0;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(obj, "processes")) {
        if (g->nproc == MAX_PROCS) break;
        proc_t *p = &g->proc[g->nproc++];
        p->pid = (unsigned)num(item, "pid", 0);
        p->used = (unsigned long long)num(item, "used", 0);
        p->gi = (unsigned)num(item, "gi", 0xFFFFFFFF), p->ci = (unsigned)num(item, "ci", 0xFFFFFFFF);
    }
}

static void counters(const cJSON *obj, gpu_t *g) {
    const cJSON *item, *ecc = cJSON_GetObjectItemCaseSensitive(obj, "ecc");
    const char *ecc_keys[2][2] = {{"corrected_volatile", "corrected_aggregate"},
                                  {"uncorrected_volatile", "uncorrected_aggregate"}};
    for (int t = 0; t < 2; t++)
        for (int s = 0; s < 2; s++) g->ecc[t][s] = (unsigned long long)num(ecc, ecc_keys[t][s], 0);
    const cJSON *pages = cJSON_GetObjectItemCaseSensitive(obj, "retired_pages");
    g->retired[0] = (unsigned)num(pages, "single_bit_ecc", 0);
    g->retired[1] = (unsigned)num(pages, "double_bit_ecc", 0);
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(obj, "remapped_rows");
    const char *row_keys[4] = {"correctable", "uncorrectable", "pending", "failed"};
    for (int i = 0; i < 4; i++) g->rows[i] = (unsigned)num(rows, row_keys[i], 0);
    g->nfield = 0;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(obj, "fields")) {
        if (g->nfield == MAX_FIELDS || !cJSON_IsNumber(item)) continue;
        g->field_id[g->nfield] = (unsigned)atoi(item->string);
        g->field_value[g->nfield++] = (unsigned long long)item->valuedouble;
    }
}

static void gpu(const cJSON *obj, int index, gpu_t *g) {
    double energy = g->energy_mj, energy_at = g->energy_at;  /* a counter survives a re-read */
    memset(g, 0, sizeof *g);
    g->present = 1, g->energy_mj = energy, g->energy_at = energy_at;
    char dflt[64];
    snprintf(dflt, sizeof dflt, "GPU-00000000-0000-0000-0000-%012d", index);
    text(obj, "name", g->name, sizeof g->name, "NVIDIA H100 80GB HBM3");
    text(obj, "uuid", g->uuid, sizeof g->uuid, dflt);
    snprintf(dflt, sizeof dflt, "00000000:%02X:00.0", 0x18 + 0x10 * index);
    text(obj, "pci_bus_id", g->bus_id, sizeof g->bus_id, dflt);
    g->arch = (unsigned)num(obj, "architecture", NVML_DEVICE_ARCH_HOPPER);
    g->minor = (unsigned)num(obj, "minor", index);
    g->lost = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, "lost"));
    g->lost_after = num(obj, "lost_after", -1);
    g->gpm_supported = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, "gpm_supported"));
    g->util = wave(obj, "utilization", 0), g->temp = wave(obj, "temperature", 40);
    g->power = wave(obj, "power_mw", 100000);
    g->mem_util = (unsigned)num(obj, "memory_utilization", 0);
    g->memory_total = (unsigned long long)num(obj, "memory_total", 85520809984.0);
    g->memory_used = (unsigned long long)num(obj, "memory_used", 0);
    g->memory_reserved = (unsigned long long)num(obj, "memory_reserved", 0);
    g->power_limit = (unsigned long long)num(obj, "power_limit_mw", 700000);
    g->sm_clock = (unsigned)num(obj, "sm_clock_mhz", 1980);
    g->mem_clock = (unsigned)num(obj, "memory_clock_mhz", 2619);
    g->pcie_replay = (unsigned)num(obj, "pcie_replay", 0);
    g->fan = (unsigned)num(obj, "fan", 0);
    g->throttle = (unsigned long long)num(obj, "throttle", 0);
    counters(obj, g);
    processes(obj, g);
    mig(obj, g);
    gpm(obj, &g->gpm);
    g->ncall = calls(obj, g->call);
}

static int load(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *root = cJSON_Parse(buf);
    if (!root) {
        fprintf(stderr, "nvml-shim: %s: not JSON near: %.40s\n", path, cJSON_GetErrorPtr());
        return 0;
    }
    const cJSON *item;
    int i = 0;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(root, "gpus")) {
        if (i < MAX_GPUS) gpu(item, i, &shim.gpu[i]), i++;
    }
    for (int j = i; j < MAX_GPUS; j++) shim.gpu[j].present = 0;
    shim.ngpu = i, shim.nxid = 0;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(root, "xid_events")) {
        if (shim.nxid == MAX_XIDS) break;
        shim.xid_gpu[shim.nxid] = (unsigned)num(item, "gpu", 0);
        shim.xid[shim.nxid++] = (unsigned)num(item, "xid", 0);
    }
    shim.init_error = (int)num(root, "init_error", 0);
    text(root, "driver_version", shim.driver, sizeof shim.driver, "580.95.05");
    shim.ncall = calls(root, shim.call);
    cJSON_Delete(root);
    return 1;
}

/* Caller holds shim_mu. A file that fails to parse keeps the scenario already loaded. */
void shim_refresh(void) {
    double now = shim_now();
    if (shim.loaded && now - checked_at < 0.05) return;
    checked_at = now;
    const char *path = getenv("NVML_SHIM_CONFIG");
    struct stat st;
    if (!path || stat(path, &st) != 0) return;
    if (shim.loaded && st.st_size == seen_size && st.st_mtim.tv_sec == seen_mtime.tv_sec &&
        st.st_mtim.tv_nsec == seen_mtime.tv_nsec)
        return;
    if (!shim.loaded) shim.t0 = now;
    if (load(path)) shim.loaded = 1;
    seen_mtime = st.st_mtim, seen_size = st.st_size;
}

/* The rule for this call: the GPU's own first, then the scenario's ("*" is every call). */
static const call_rule_t *rule_for(const call_rule_t *rules, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(rules[i].name, name) || !strcmp(rules[i].name, "*")) return &rules[i];
    return NULL;
}

static nvmlReturn_t apply(const call_rule_t *rule) {
    if (!rule) return NVML_SUCCESS;
    if (rule->hang > 0) {
        double secs = rule->hang;
        UNLOCK();  /* a hung call holds no lock: other threads' calls go on */
        struct timespec ts = {(time_t)secs, (long)((secs - (time_t)secs) * 1e9)};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&shim_mu);
    }
    return (nvmlReturn_t)rule->code;
}

extern int shim_initialised;

int shim_lost(const gpu_t *g) {
    return g->lost || (g->lost_after >= 0 && shim_now() - shim.t0 >= g->lost_after);
}

nvmlReturn_t shim_call(const char *name) {
    pthread_mutex_lock(&shim_mu);
    shim_refresh();
    nvmlReturn_t rc = shim_initialised ? apply(rule_for(shim.call, shim.ncall, name))
                                       : NVML_ERROR_UNINITIALIZED;
    UNLOCK();
    return rc;
}

nvmlReturn_t shim_enter(nvmlDevice_t dev, const char *name, int mig_ok, gpu_t **gpu, mig_t **mig) {
    pthread_mutex_lock(&shim_mu);
    shim_refresh();
    nvmlReturn_t rc = NVML_SUCCESS;
    if (!shim_initialised) rc = NVML_ERROR_UNINITIALIZED;
    else if (!dev || dev->gpu < 0 || dev->gpu >= shim.ngpu) rc = NVML_ERROR_INVALID_ARGUMENT;
    else rc = apply(rule_for(shim.call, shim.ncall, name));
    if (rc == NVML_SUCCESS) {
        gpu_t *g = &shim.gpu[dev->gpu];
        *gpu = g, *mig = dev->slot >= 0 ? &g->mig[dev->slot] : NULL;
        if (shim_lost(g)) rc = NVML_ERROR_GPU_IS_LOST;
        else if (dev->slot >= 0 && !(*mig)->present) rc = NVML_ERROR_INVALID_ARGUMENT;
        else if (dev->slot >= 0 && !mig_ok) rc = NVML_ERROR_NOT_SUPPORTED;
        else rc = apply(rule_for(g->call, g->ncall, name));
    }
    if (rc != NVML_SUCCESS) UNLOCK();
    return rc;
}
