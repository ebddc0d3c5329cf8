#include "dicom/sop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

/* PS3.4 Annex B.5, the classes modalities and archives actually send. Sorted by UID. */
static const struct sop_class {
    const char *uid, *name;
} storage[] = {
    {"1.2.840.10008.5.1.4.1.1.1", "ComputedRadiographyImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.1.1", "DigitalXRayImageStorageForPresentation"},
    {"1.2.840.10008.5.1.4.1.1.1.1.1", "DigitalXRayImageStorageForProcessing"},
    {"1.2.840.10008.5.1.4.1.1.1.2", "DigitalMammographyXRayImageStorageForPresentation"},
    {"1.2.840.10008.5.1.4.1.1.1.2.1", "DigitalMammographyXRayImageStorageForProcessing"},
    {"1.2.840.10008.5.1.4.1.1.1.3", "DigitalIntraOralXRayImageStorageForPresentation"},
    {"1.2.840.10008.5.1.4.1.1.1.3.1", "DigitalIntraOralXRayImageStorageForProcessing"},
    {"1.2.840.10008.5.1.4.1.1.104.1", "EncapsulatedPDFStorage"},
    {"1.2.840.10008.5.1.4.1.1.104.2", "EncapsulatedCDAStorage"},
    {"1.2.840.10008.5.1.4.1.1.11.1", "GrayscaleSoftcopyPresentationStateStorage"},
    {"1.2.840.10008.5.1.4.1.1.11.2", "ColorSoftcopyPresentationStateStorage"},
    {"1.2.840.10008.5.1.4.1.1.12.1", "XRayAngiographicImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.12.1.1", "EnhancedXAImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.12.2", "XRayRadiofluoroscopicImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.128", "PositronEmissionTomographyImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.128.1", "LegacyConvertedEnhancedPETImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.13.1.1", "XRay3DAngiographicImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.13.1.3", "BreastTomosynthesisImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.130", "EnhancedPETImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.2", "CTImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.2.1", "EnhancedCTImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.2.2", "LegacyConvertedEnhancedCTImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.20", "NuclearMedicineImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.3.1", "UltrasoundMultiFrameImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.4", "MRImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.4.1", "EnhancedMRImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.4.2", "MRSpectroscopyStorage"},
    {"1.2.840.10008.5.1.4.1.1.4.3", "EnhancedMRColorImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.481.1", "RTImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.481.2", "RTDoseStorage"},
    {"1.2.840.10008.5.1.4.1.1.481.3", "RTStructureSetStorage"},
    {"1.2.840.10008.5.1.4.1.1.481.4", "RTBeamsTreatmentRecordStorage"},
    {"1.2.840.10008.5.1.4.1.1.481.5", "RTPlanStorage"},
    {"1.2.840.10008.5.1.4.1.1.481.8", "RTIonPlanStorage"},
    {"1.2.840.10008.5.1.4.1.1.481.9", "RTIonBeamsTreatmentRecordStorage"},
    {"1.2.840.10008.5.1.4.1.1.6.1", "UltrasoundImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.6.2", "EnhancedUSVolumeStorage"},
    {"1.2.840.10008.5.1.4.1.1.66", "RawDataStorage"},
    {"1.2.840.10008.5.1.4.1.1.66.4", "SegmentationStorage"},
    {"1.2.840.10008.5.1.4.1.1.7", "SecondaryCaptureImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.7.1", "MultiFrameSingleBitSecondaryCaptureImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.7.2", "MultiFrameGrayscaleByteSecondaryCaptureImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.7.3", "MultiFrameGrayscaleWordSecondaryCaptureImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.7.4", "MultiFrameTrueColorSecondaryCaptureImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.77.1.4", "VLPhotographicImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.77.1.6", "VLWholeSlideMicroscopyImageStorage"},
    {"1.2.840.10008.5.1.4.1.1.88.11", "BasicTextSRStorage"},
    {"1.2.840.10008.5.1.4.1.1.88.22", "EnhancedSRStorage"},
    {"1.2.840.10008.5.1.4.1.1.88.33", "ComprehensiveSRStorage"},
    {"1.2.840.10008.5.1.4.1.1.88.34", "Comprehensive3DSRStorage"},
    {"1.2.840.10008.5.1.4.1.1.88.59", "KeyObjectSelectionDocumentStorage"},
    {"1.2.840.10008.5.1.4.1.1.88.67", "XRayRadiationDoseSRStorage"},
    {"1.2.840.10008.5.1.4.1.1.9.1.1", "TwelveLeadECGWaveformStorage"},
    {"1.2.840.10008.5.1.4.1.1.9.1.2", "GeneralECGWaveformStorage"},
    {"1.2.840.10008.5.1.4.1.1.9.1.3", "AmbulatoryECGWaveformStorage"},
    {"1.2.840.10008.5.1.4.1.1.9.2.1", "HemodynamicWaveformStorage"},
    {"1.2.840.10008.5.1.4.1.1.9.3.1", "CardiacElectrophysiologyWaveformStorage"},
    {"1.2.840.10008.5.1.4.1.1.9.4.1", "BasicVoiceAudioWaveformStorage"},
};
#define NSTORAGE (sizeof(storage) / sizeof(storage[0]))

#define EXTRA_MAX 64
static char extra[EXTRA_MAX][65];
static size_t nextra;

static int by_uid(const void *k, const void *e)
{
    return strcmp(k, ((const struct sop_class *)e)->uid);
}

const char *hdx_sop_storage_name(const char *uid)
{
    const struct sop_class *c = bsearch(uid, storage, NSTORAGE, sizeof(storage[0]), by_uid);
    if (c) return c->name;
    for (size_t i = 0; i < nextra; i++)
        if (!strcmp(extra[i], uid)) return "Storage";
    return NULL;
}

int hdx_uid_valid(const char *uid)
{
    size_t n = strlen(uid), comp = 0;
    if (n < 1 || n > 64) return 0;
    for (size_t i = 0; i < n; i++) {
        if (uid[i] == '.') {
            if (comp == 0) return 0;
            comp = 0;
            continue;
        }
        if (uid[i] < '0' || uid[i] > '9') return 0;
        if (comp == 0 && uid[i] == '0' && i + 1 < n && uid[i + 1] != '.') return 0;
        comp++;
    }
    return comp > 0;
}

int hdx_sop_add_storage(const char *list, char *why, size_t cap)
{
    const char *p = list;
    nextra = 0;
    while (*p) {
        size_t len = strcspn(p, ",");
        char uid[80];
        while (len && (*p == ' '))
            p++, len--;
        snprintf(uid, sizeof(uid), "%.*s", (int)(len < sizeof(uid) - 1 ? len : sizeof(uid) - 1), p);
        for (size_t e = strlen(uid); e && uid[e - 1] == ' '; e--)
            uid[e - 1] = 0;
        if (len >= sizeof(uid) || !hdx_uid_valid(uid)) {
            snprintf(why, cap, "dicom.storage_classes: '%.70s' is not a UID", uid);
            return HDX_E_CONFIG;
        }
        if (nextra == EXTRA_MAX) {
            snprintf(why, cap, "dicom.storage_classes: more than %d classes", EXTRA_MAX);
            return HDX_E_CONFIG;
        }
        memcpy(extra[nextra++], uid, strlen(uid) + 1);
        p += strcspn(p, ",");
        if (*p == ',') p++;
    }
    return HDX_OK;
}

int hdx_sop_abstract_ok(const char *uid)
{
    return hdx_sop_storage_name(uid) || !strcmp(uid, HDX_UID_VERIFICATION) ||
           !strcmp(uid, HDX_UID_FIND_PATIENT_ROOT) || !strcmp(uid, HDX_UID_FIND_STUDY_ROOT);
}

static const struct ts {
    const char *uid, *name;
    int compressed;
} syntaxes[] = {
    {HDX_TS_EXPLICIT_LE, "ExplicitVRLittleEndian", 0},
    {HDX_TS_IMPLICIT_LE, "ImplicitVRLittleEndian", 0},
    {HDX_TS_DEFLATED_LE, "DeflatedExplicitVRLittleEndian", 0},
    {HDX_TS_EXPLICIT_BE, "ExplicitVRBigEndian", 0},
    {"1.2.840.10008.1.2.4.50", "JPEGBaseline8Bit", 1},
    {"1.2.840.10008.1.2.4.51", "JPEGExtended12Bit", 1},
    {"1.2.840.10008.1.2.4.57", "JPEGLossless", 1},
    {"1.2.840.10008.1.2.4.70", "JPEGLosslessSV1", 1},
    {"1.2.840.10008.1.2.4.80", "JPEGLSLossless", 1},
    {"1.2.840.10008.1.2.4.81", "JPEGLSNearLossless", 1},
    {"1.2.840.10008.1.2.4.90", "JPEG2000Lossless", 1},
    {"1.2.840.10008.1.2.4.91", "JPEG2000", 1},
    {"1.2.840.10008.1.2.4.201", "HTJ2KLossless", 1},
    {"1.2.840.10008.1.2.4.202", "HTJ2KLosslessRPCL", 1},
    {"1.2.840.10008.1.2.4.203", "HTJ2K", 1},
    {"1.2.840.10008.1.2.5", "RLELossless", 1},
};
#define NTS (sizeof(syntaxes) / sizeof(syntaxes[0]))

const char *const *hdx_ts_accepted(size_t *n)
{
    static const char *uids[NTS];
    for (size_t i = 0; i < NTS; i++)
        uids[i] = syntaxes[i].uid;
    *n = NTS;
    return uids;
}

int hdx_ts_compressed(const char *uid)
{
    for (size_t i = 0; i < NTS; i++)
        if (!strcmp(syntaxes[i].uid, uid)) return syntaxes[i].compressed;
    return 0;
}

const char *hdx_ts_name(const char *uid)
{
    for (size_t i = 0; i < NTS; i++)
        if (!strcmp(syntaxes[i].uid, uid)) return syntaxes[i].name;
    return "?";
}
