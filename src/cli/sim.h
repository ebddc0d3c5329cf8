/* sim: synthetic bedside-monitor traffic, shared by `hdx sim` and `hdx bench`.
 * Builds HL7 v2.5.1 ORU^R01 vital-sign messages (MSH, PID, PV1, OBR, one OBX per vital, LOINC
 * codes, UCUM units, about 1 KB) for synthetic patients whose vitals follow bounded random
 * walks, and checks the ACKs that come back. Every name, MRN and value is invented: no real
 * patient data is ever produced. Pure functions of their arguments (the generator state lives
 * in struct sim_vitals), so they allocate nothing. Thread: any, one struct per thread. */
#ifndef HDX_SIM_H
#define HDX_SIM_H

#include <stddef.h>
#include <stdint.h>

enum sim_vital { SIM_HR, SIM_SPO2, SIM_SYS, SIM_DIA, SIM_RR, SIM_TEMP, SIM_NVITALS };

struct sim_vitals {
    double val[SIM_NVITALS];  /* current values, within each vital's bounds */
    double base[SIM_NVITALS]; /* this patient's resting value the walk drifts back to */
    uint64_t rng;             /* generator state; never 0 */
};

struct sim_patient {
    char mrn[24];    /* "SIM-10001" */
    char family[24]; /* from a small list of invented names */
    char given[24];
    char sex;     /* 'F' or 'M' */
    char dob[9];  /* YYYYMMDD */
    char bed[16]; /* "ICU-01" */
    char visit[24];
    unsigned house, zip; /* street address: house number, postal code */
};

/* MSH-10 is ST(20) in v2.5.1, and hdxd drops a repeated (sender, MSH-10) as a duplicate, so
 * a control id packs a per-run tag, the connection and the sequence into 20 characters. */
#define SIM_CONTROL_ID_LEN 20

/* The patient of monitor (or connection) number index (1-based). */
void sim_patient_init(struct sim_patient *p, unsigned index);
/* Resting values and a generator seeded from seed (any value). */
void sim_vitals_init(struct sim_vitals *v, uint64_t seed);
/* One step of every walk: small steps, drawn back towards the resting value, kept in range. */
void sim_vitals_step(struct sim_vitals *v);
/* A tag that differs between runs (time and pid), for sim_control_id. */
uint32_t sim_run_tag(void);
/* out must hold SIM_CONTROL_ID_LEN + 1 bytes. */
void sim_control_id(char *out, uint32_t run_tag, unsigned index, uint64_t seq);

/* Writes one ORU^R01 payload (segments ending in CR, no MLLP framing) sent by `device`, for
 * patient p with vitals v observed at time_us (UTC µs since the epoch), MSH-10 control_id.
 * Returns its length (out is NUL-terminated, not counted), or 0 if cap is too small. */
size_t sim_oru_build(char *out, size_t cap, const struct sim_vitals *v, const struct sim_patient *p,
                     const char *device, const char *control_id, int64_t time_us);

enum sim_ack { SIM_ACK_AA, SIM_ACK_AE, SIM_ACK_AR, SIM_ACK_BAD };
/* Classifies an ACK payload by MSA-1; SIM_ACK_BAD when it does not parse, has no MSA, or
 * MSA-2 is not control_id (an ACK for another message is as bad as none). */
enum sim_ack sim_ack_check(const uint8_t *ack, size_t len, const char *control_id);

/* Makes sure DIR/devices/NAME.pem exists, enrolling the device with role (as `hdx device add`
 * does) when it does not; writes the certificate and key paths. Returns 0, 1 when it enrolled
 * the device now, or -1 (a line on stderr). */
int sim_enrol(const char *dir, const char *name, const char *role, char *cert, char *key,
              size_t cap);

/* Parses an option's number in [lo, hi]; prints "hdx: OPT must be..." and returns -1 if not. */
int sim_parse_number(const char *opt, const char *s, double lo, double hi, double *out);

#endif
