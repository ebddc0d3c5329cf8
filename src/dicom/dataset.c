/* dataset: the DICOM data-set walker, key extraction, Part 10 header (see dataset.h).
 *
 * DESIGN: one loop, no recursion. The containers open at the current position (sequences,
 * their items, the fragments of encapsulated pixel data) are an explicit stack of frames, at
 * most 2 * DS_DEPTH_CAP + 2 deep, held on the C stack: a sequence nested 1,000 deep costs
 * one refusal at max_depth, never stack growth. Every element header and value is read
 * through a cursor (dicom/cursor.h) whose window ends where the innermost frame with a
 * defined length ends, so a child can never read past its parent.
 *
 * Invariants:
 *  1. pos <= frame.end <= n for every open frame; frame.end never grows when pushing.
 *  2. Every visited element has depth <= max_depth and is counted against max_elements.
 *  3. Refusal texts are constants; the offset is that of the element's tag.
 *
 * Choices where PS3.5 is silent or where files in the wild stray:
 *  - Odd value lengths (7.1.1 requires even) are walked, not refused: dcmtk and pydicom read
 *    them, and refusing would reject encapsulated pixel data many encoders write.
 *  - Explicit VR UN of undefined length is a sequence whose content is Implicit VR LE
 *    (6.2.2 note, CP-246), as dcmtk and pydicom read it.
 *  - Undefined length is accepted for SQ, UN, and OB/OW at (7FE0,0010) (encapsulated, A.4);
 *    any other VR with it is refused. Fragments must have defined lengths.
 *  - Items, delimiters and fragments are elements for max_elements and sit one level below
 *    the sequence they belong to (so encapsulated pixel data counts as one nesting level).
 *  - A delimiter must have length 0 (7.5.2); an item tag outside a sequence, or a delimiter
 *    without an open undefined-length container of its kind, is refused.
 *  - max_depth above DS_DEPTH_CAP is treated as DS_DEPTH_CAP (the stack is fixed). */
#include "dicom/dataset.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "core/err.h"
#include "dicom/cursor.h"

#define DS_DEPTH_CAP 128
#define DS_DEFAULT_DEPTH 32
#define DS_DEFAULT_VALUE (1u << 30)
#define DS_DEFAULT_ELEMENTS 1000000
/* 0xFFFFFFF0 and above (but undefined) is no length a real value has; refusing it also keeps
 * pos + length far from any overflow on 32-bit size_t. */
#define DS_LENGTH_MAX 0xFFFFFFEFu

#define TAG(g, e) ((uint32_t)(g) << 16 | (uint32_t)(e))
#define TAG_ITEM TAG(0xFFFE, 0xE000)
#define TAG_ITEM_DELIM TAG(0xFFFE, 0xE00D)
#define TAG_SEQ_DELIM TAG(0xFFFE, 0xE0DD)
#define TAG_PIXEL_DATA TAG(0x7FE0, 0x0010)

void hdx_ds_limits_default(struct hdx_ds_limits *l)
{
    if (l == NULL) return;
    l->max_depth = DS_DEFAULT_DEPTH;
    l->max_value = DS_DEFAULT_VALUE;
    l->max_elements = DS_DEFAULT_ELEMENTS;
}

/* ---- the implicit VR dictionary ------------------------------------------------------- */

/* Every tag PS3.6 (2023) gives VR SQ, generated from pydicom's copy of the data dictionary
 * (pydicom/_dicom_dict.py). In Implicit VR a defined-length sequence is only recognisable
 * by its tag; a sequence missing here is walked as one opaque UN value, never misread.
 * Sorted for bsearch. */
static const uint32_t sq_tags[] = {
    0x00041220, 0x00080006, 0x00080051, 0x00080063, 0x00080082, 0x00080096, 0x0008009D, 0x00080109,
    0x00080110, 0x00080121, 0x00080123, 0x00080124, 0x00080220, 0x00080300, 0x00080305, 0x00080310,
    0x00081032, 0x0008103F, 0x00081041, 0x00081049, 0x00081052, 0x00081062, 0x00081072, 0x00081084,
    0x00081100, 0x00081110, 0x00081111, 0x00081115, 0x00081120, 0x00081125, 0x00081130, 0x00081134,
    0x0008113A, 0x00081140, 0x00081145, 0x0008114A, 0x0008114B, 0x00081156, 0x00081164, 0x00081198,
    0x00081199, 0x0008119A, 0x00081200, 0x00081250, 0x00082112, 0x00082133, 0x00082135, 0x00082218,
    0x00082220, 0x00082228, 0x00082229, 0x00082230, 0x00082240, 0x00082242, 0x00082244, 0x00082246,
    0x00082251, 0x00082253, 0x00082255, 0x00082257, 0x00082259, 0x0008225A, 0x0008225C, 0x00083001,
    0x00083011, 0x00089092, 0x00089121, 0x00089124, 0x00089154, 0x00089215, 0x00089237, 0x00089410,
    0x00089458, 0x00100024, 0x00100026, 0x00100027, 0x00100050, 0x00100101, 0x00100102, 0x00100201,
    0x00100215, 0x00100216, 0x00100219, 0x00100221, 0x00100229, 0x00101002, 0x00101021, 0x00101100,
    0x00102202, 0x00102293, 0x00102294, 0x00102296, 0x00120064, 0x00120083, 0x00140106, 0x00142002,
    0x00142012, 0x0014201E, 0x00142030, 0x00142204, 0x00142220, 0x00143020, 0x00143040, 0x00143060,
    0x00144002, 0x00144008, 0x0014400E, 0x00144010, 0x00144011, 0x00144020, 0x00144030, 0x00144035,
    0x00144040, 0x00144050, 0x00144051, 0x00144060, 0x00144070, 0x00144080, 0x00144083, 0x00144086,
    0x00144087, 0x00144091, 0x0014409A, 0x00180012, 0x00180014, 0x00180026, 0x00180029, 0x0018002A,
    0x00180036, 0x0018100A, 0x001811B8, 0x001811BA, 0x001811BC, 0x001811BF, 0x001811C1, 0x00181272,
    0x00182041, 0x00185011, 0x00185104, 0x00186011, 0x00189006, 0x00189042, 0x00189045, 0x00189049,
    0x00189076, 0x00189083, 0x00189084, 0x00189092, 0x00189103, 0x00189107, 0x00189112, 0x00189114,
    0x00189115, 0x00189117, 0x00189118, 0x00189119, 0x00189125, 0x00189126, 0x00189152, 0x00189176,
    0x00189197, 0x00189226, 0x00189227, 0x00189239, 0x00189251, 0x0018925D, 0x00189260, 0x00189301,
    0x00189304, 0x00189308, 0x00189312, 0x00189314, 0x00189321, 0x00189325, 0x00189326, 0x00189329,
    0x00189338, 0x00189340, 0x00189341, 0x00189346, 0x00189360, 0x00189362, 0x00189363, 0x00189364,
    0x00189365, 0x0018936F, 0x00189379, 0x0018937D, 0x00189380, 0x00189381, 0x00189382, 0x00189401,
    0x00189405, 0x00189406, 0x00189407, 0x00189412, 0x00189417, 0x00189432, 0x00189434, 0x00189451,
    0x00189455, 0x00189456, 0x00189462, 0x00189472, 0x00189476, 0x00189477, 0x00189504, 0x00189506,
    0x00189507, 0x00189530, 0x00189538, 0x00189541, 0x00189542, 0x00189555, 0x00189556, 0x00189601,
    0x00189621, 0x00189732, 0x00189733, 0x00189734, 0x00189735, 0x00189736, 0x00189737, 0x00189749,
    0x00189751, 0x00189771, 0x00189772, 0x00189803, 0x00189806, 0x00189807, 0x00189809, 0x0018980D,
    0x0018980E, 0x0018980F, 0x00189902, 0x00189903, 0x00189906, 0x00189907, 0x00189909, 0x0018990B,
    0x0018990C, 0x0018990D, 0x0018990E, 0x00189911, 0x00189912, 0x00189913, 0x00189914, 0x0018991B,
    0x0018991C, 0x0018991D, 0x0018991F, 0x00189920, 0x00189931, 0x00189932, 0x00189933, 0x00189934,
    0x00189935, 0x00189936, 0x0018993B, 0x0018993C, 0x0018993D, 0x0018993E, 0x0018A001, 0x00209071,
    0x00209111, 0x00209113, 0x00209116, 0x00209170, 0x00209171, 0x00209172, 0x00209221, 0x00209222,
    0x00209253, 0x0020930E, 0x0020930F, 0x00209310, 0x00209450, 0x00209529, 0x00220006, 0x00220015,
    0x00220016, 0x00220017, 0x00220018, 0x00220019, 0x0022001A, 0x0022001B, 0x0022001C, 0x0022001D,
    0x00220020, 0x00220021, 0x00220022, 0x00220031, 0x00220042, 0x00220058, 0x00221007, 0x00221008,
    0x00221012, 0x00221024, 0x00221025, 0x00221028, 0x00221035, 0x00221036, 0x00221040, 0x00221044,
    0x00221045, 0x00221047, 0x00221048, 0x0022104A, 0x0022104B, 0x00221050, 0x00221090, 0x00221092,
    0x00221096, 0x00221100, 0x00221101, 0x00221103, 0x00221125, 0x00221127, 0x00221128, 0x0022112A,
    0x00221132, 0x00221133, 0x00221134, 0x00221135, 0x00221150, 0x00221153, 0x00221210, 0x00221211,
    0x00221212, 0x00221220, 0x00221225, 0x00221230, 0x00221250, 0x00221255, 0x00221257, 0x00221260,
    0x00221262, 0x00221265, 0x00221300, 0x00221310, 0x00221330, 0x00221420, 0x00221423, 0x00221436,
    0x00221443, 0x00221445, 0x00221450, 0x00221458, 0x00221465, 0x00221470, 0x00221472, 0x00221512,
    0x00221513, 0x00221518, 0x00221525, 0x00221526, 0x00221612, 0x00221615, 0x00221618, 0x00221620,
    0x00221628, 0x00221640, 0x00240016, 0x00240021, 0x00240024, 0x00240032, 0x00240033, 0x00240034,
    0x00240058, 0x00240064, 0x00240065, 0x00240067, 0x00240083, 0x00240085, 0x00240089, 0x00240097,
    0x00240110, 0x00240112, 0x00240114, 0x00240115, 0x00240122, 0x00240317, 0x00240320, 0x00240325,
    0x00240344, 0x00281230, 0x00281352, 0x00281401, 0x00281404, 0x0028140B, 0x0028140C, 0x00283000,
    0x00283010, 0x00283110, 0x00285000, 0x00286100, 0x00287000, 0x00287008, 0x0028700A, 0x0028700F,
    0x00287010, 0x00287011, 0x00287012, 0x00287015, 0x00287016, 0x0028701C, 0x00287022, 0x00287023,
    0x00287024, 0x00287027, 0x00287028, 0x0028702C, 0x0028702D, 0x0028702E, 0x00289110, 0x00289132,
    0x00289145, 0x00289415, 0x00289422, 0x00289443, 0x00289501, 0x00289502, 0x00289505, 0x00321031,
    0x00321034, 0x00321064, 0x00321065, 0x00321067, 0x00340001, 0x00340009, 0x0034000A, 0x0034000B,
    0x0034000D, 0x00380004, 0x00380014, 0x00380044, 0x00380064, 0x00380100, 0x00380101, 0x00380502,
    0x003A0200, 0x003A0208, 0x003A0209, 0x003A020A, 0x003A0211, 0x003A0240, 0x003A0242, 0x003A0300,
    0x003A0312, 0x00400008, 0x0040000A, 0x0040000B, 0x00400026, 0x00400027, 0x00400036, 0x00400039,
    0x0040003A, 0x00400100, 0x00400220, 0x00400260, 0x00400270, 0x00400275, 0x00400281, 0x00400293,
    0x00400295, 0x00400296, 0x0040030E, 0x00400320, 0x00400321, 0x00400324, 0x00400330, 0x00400340,
    0x00400440, 0x00400441, 0x00400500, 0x00400513, 0x00400515, 0x00400518, 0x00400520, 0x00400550,
    0x00400552, 0x00400555, 0x00400560, 0x00400562, 0x0040059A, 0x00400610, 0x00400612, 0x00400620,
    0x00400710, 0x0040071A, 0x004008D8, 0x004008DA, 0x004008EA, 0x004009F8, 0x0040100A, 0x00401011,
    0x00401012, 0x00401101, 0x00404004, 0x00404007, 0x00404009, 0x00404015, 0x00404016, 0x00404018,
    0x00404019, 0x00404021, 0x00404022, 0x00404025, 0x00404026, 0x00404027, 0x00404028, 0x00404029,
    0x00404030, 0x00404031, 0x00404032, 0x00404033, 0x00404034, 0x00404035, 0x00404070, 0x00404071,
    0x00404072, 0x00404074, 0x00409092, 0x00409094, 0x00409096, 0x00409098, 0x00409220, 0x0040A020,
    0x0040A026, 0x0040A028, 0x0040A043, 0x0040A066, 0x0040A068, 0x0040A070, 0x0040A073, 0x0040A076,
    0x0040A078, 0x0040A07A, 0x0040A07C, 0x0040A085, 0x0040A088, 0x0040A090, 0x0040A167, 0x0040A168,
    0x0040A170, 0x0040A195, 0x0040A296, 0x0040A300, 0x0040A301, 0x0040A313, 0x0040A340, 0x0040A358,
    0x0040A360, 0x0040A370, 0x0040A372, 0x0040A375, 0x0040A380, 0x0040A385, 0x0040A390, 0x0040A404,
    0x0040A504, 0x0040A525, 0x0040A730, 0x0040A731, 0x0040A732, 0x0040A744, 0x0040A801, 0x0040A806,
    0x0040A807, 0x0040A808, 0x0040B020, 0x0040E006, 0x0040E008, 0x0040E021, 0x0040E022, 0x0040E023,
    0x0040E024, 0x0040E025, 0x00420013, 0x00440007, 0x00440013, 0x00440019, 0x00440100, 0x00440101,
    0x00440103, 0x00440107, 0x00440109, 0x0044010A, 0x00460014, 0x00460015, 0x00460016, 0x00460018,
    0x00460028, 0x00460047, 0x00460050, 0x00460052, 0x00460070, 0x00460071, 0x00460074, 0x00460080,
    0x00460097, 0x00460098, 0x00460100, 0x00460101, 0x00460102, 0x00460110, 0x00460111, 0x00460112,
    0x00460113, 0x00460116, 0x00460121, 0x00460122, 0x00460123, 0x00460124, 0x00460145, 0x00460207,
    0x00460210, 0x00460211, 0x00460215, 0x00460218, 0x00460244, 0x00480008, 0x00480100, 0x00480105,
    0x00480108, 0x00480110, 0x00480120, 0x00480200, 0x00480207, 0x0048021A, 0x00500010, 0x00500012,
    0x00520016, 0x00520025, 0x00520027, 0x00520029, 0x00540012, 0x00540013, 0x00540016, 0x00540022,
    0x00540032, 0x00540052, 0x00540062, 0x00540063, 0x00540072, 0x00540220, 0x00540222, 0x00540300,
    0x00540302, 0x00540304, 0x00540306, 0x00540410, 0x00540412, 0x00540414, 0x00603000, 0x00620002,
    0x00620003, 0x00620007, 0x0062000A, 0x0062000F, 0x00620011, 0x00620012, 0x00640002, 0x00640005,
    0x0064000F, 0x00640010, 0x00660002, 0x00660011, 0x00660012, 0x00660013, 0x00660026, 0x00660027,
    0x00660028, 0x0066002B, 0x0066002D, 0x0066002E, 0x0066002F, 0x00660030, 0x00660034, 0x00660035,
    0x00660101, 0x00660102, 0x00660104, 0x00660108, 0x00660121, 0x00660124, 0x00660130, 0x00660132,
    0x00660133, 0x00660134, 0x00686222, 0x00686224, 0x00686225, 0x00686230, 0x00686260, 0x00686265,
    0x006862A0, 0x006862C0, 0x006862E0, 0x006862F0, 0x00686320, 0x00686360, 0x006863A0, 0x006863A4,
    0x006863A8, 0x006863AC, 0x006863B0, 0x006863E0, 0x00686400, 0x00686430, 0x00686470, 0x00686500,
    0x00686510, 0x00686520, 0x00686545, 0x00686550, 0x006865A0, 0x006865E0, 0x00687003, 0x006A0002,
    0x006A0008, 0x006A0009, 0x006A000A, 0x006A000B, 0x00700001, 0x00700008, 0x00700009, 0x0070005A,
    0x00700060, 0x00700086, 0x00700087, 0x00700209, 0x00700231, 0x00700232, 0x00700233, 0x00700234,
    0x00700287, 0x00700308, 0x00700309, 0x0070030A, 0x0070030D, 0x00700311, 0x00700314, 0x00700318,
    0x0070031C, 0x0070031E, 0x0070031F, 0x00700402, 0x00700404, 0x00701104, 0x00701201, 0x0070120A,
    0x00701301, 0x00701304, 0x00701801, 0x00701803, 0x00701805, 0x00701806, 0x00701901, 0x00701903,
    0x00701905, 0x00701A04, 0x00701A08, 0x00701B01, 0x00701B03, 0x00701B04, 0x00701B11, 0x00701B12,
    0x0072000C, 0x0072000E, 0x00720012, 0x00720020, 0x00720022, 0x00720030, 0x0072003E, 0x00720080,
    0x00720102, 0x00720200, 0x00720210, 0x00720214, 0x00720300, 0x00720400, 0x00720422, 0x00720424,
    0x00720427, 0x00720430, 0x00720600, 0x00720705, 0x00741002, 0x00741007, 0x00741008, 0x0074100E,
    0x00741020, 0x00741030, 0x00741040, 0x00741042, 0x00741044, 0x00741046, 0x00741048, 0x0074104A,
    0x0074104C, 0x0074104E, 0x00741050, 0x00741210, 0x00741212, 0x00741216, 0x00741220, 0x00741224,
    0x00741401, 0x00741405, 0x00741409, 0x0074140D, 0x0074140E, 0x00760008, 0x0076000C, 0x0076000E,
    0x00760010, 0x00760020, 0x00760032, 0x00760034, 0x00760040, 0x00760060, 0x00780026, 0x00780028,
    0x0078002A, 0x00780070, 0x007800B0, 0x007800B4, 0x00800001, 0x00800002, 0x00800003, 0x00800008,
    0x00800012, 0x00800013, 0x00820004, 0x00820005, 0x00820007, 0x0082000C, 0x00820010, 0x00820017,
    0x00820021, 0x00820022, 0x00820034, 0x00820035, 0x00880200, 0x04000401, 0x04000402, 0x04000403,
    0x04000500, 0x04000550, 0x04000551, 0x04000561, 0x2000001E, 0x200000A2, 0x200000A4, 0x200000A8,
    0x20000500, 0x20000510, 0x20100500, 0x20100510, 0x20100520, 0x20200110, 0x20200111, 0x20200130,
    0x20200140, 0x20400010, 0x20400020, 0x20400500, 0x20500010, 0x20500500, 0x21000500, 0x21200050,
    0x21200070, 0x21300010, 0x21300015, 0x21300030, 0x21300040, 0x21300050, 0x21300060, 0x21300080,
    0x213000A0, 0x213000C0, 0x2200000D, 0x30020030, 0x30020040, 0x30020050, 0x30040010, 0x30040050,
    0x30040060, 0x30060010, 0x30060012, 0x30060014, 0x30060016, 0x30060018, 0x30060020, 0x30060030,
    0x30060037, 0x30060039, 0x30060040, 0x3006004A, 0x30060080, 0x30060086, 0x300600A0, 0x300600B0,
    0x300600B6, 0x300600B9, 0x300600C0, 0x300600C9, 0x300600CA, 0x300600CB, 0x30080010, 0x30080020,
    0x30080021, 0x30080030, 0x30080040, 0x30080041, 0x30080050, 0x30080060, 0x30080068, 0x30080070,
    0x30080080, 0x30080090, 0x300800A0, 0x300800B0, 0x300800C0, 0x300800D0, 0x300800D1, 0x300800E0,
    0x300800F0, 0x300800F2, 0x300800F4, 0x300800F6, 0x30080100, 0x30080110, 0x30080120, 0x30080130,
    0x30080140, 0x30080150, 0x30080160, 0x30080171, 0x30080173, 0x30080220, 0x30080240, 0x300A0010,
    0x300A0040, 0x300A0048, 0x300A0070, 0x300A008C, 0x300A00B0, 0x300A00B6, 0x300A00CA, 0x300A00D1,
    0x300A00E3, 0x300A00F4, 0x300A0107, 0x300A0111, 0x300A0116, 0x300A011A, 0x300A0180, 0x300A0190,
    0x300A01A0, 0x300A01B4, 0x300A0206, 0x300A0210, 0x300A0230, 0x300A0260, 0x300A0280, 0x300A02B0,
    0x300A02D0, 0x300A02EA, 0x300A030C, 0x300A0314, 0x300A0332, 0x300A0342, 0x300A0360, 0x300A0370,
    0x300A0380, 0x300A03A0, 0x300A03A2, 0x300A03A4, 0x300A03A6, 0x300A03A8, 0x300A03AA, 0x300A03AC,
    0x300A0401, 0x300A0410, 0x300A0420, 0x300A0431, 0x300A0441, 0x300A0450, 0x300A0453, 0x300A0505,
    0x300A0506, 0x300A060A, 0x300A0610, 0x300A0614, 0x300A0616, 0x300A0617, 0x300A0618, 0x300A061C,
    0x300A061F, 0x300A0620, 0x300A0621, 0x300A0629, 0x300A062B, 0x300A062D, 0x300A062F, 0x300A0630,
    0x300A0631, 0x300A0632, 0x300A0635, 0x300A063A, 0x300A063B, 0x300A063E, 0x300A063F, 0x300A0644,
    0x300A0646, 0x300A0647, 0x300A064C, 0x300A064D, 0x300A0651, 0x300A0656, 0x300A0658, 0x300A0659,
    0x300A065A, 0x300A065B, 0x300A065D, 0x300A0660, 0x300A0662, 0x300A0667, 0x300A0668, 0x300A066A,
    0x300A066F, 0x300A0671, 0x300A0673, 0x300A0677, 0x300A0678, 0x300A067B, 0x300A067E, 0x300A067F,
    0x300A0683, 0x300A0684, 0x300A0686, 0x300A0689, 0x300A068A, 0x300A0702, 0x300A0703, 0x300A0715,
    0x300A0716, 0x300A0722, 0x300A0731, 0x300A0733, 0x300A073E, 0x300A073F, 0x300A0740, 0x300A0743,
    0x300A0744, 0x300A0745, 0x300A0746, 0x300A0761, 0x300A0762, 0x300A0772, 0x300A0774, 0x300A0780,
    0x300A0784, 0x300A0787, 0x300A0788, 0x300A0789, 0x300A078A, 0x300A078B, 0x300A078C, 0x300A078D,
    0x300A078F, 0x300A0790, 0x300A0791, 0x300A0793, 0x300A0797, 0x300A0798, 0x300A0799, 0x300A079C,
    0x300A079D, 0x300C0002, 0x300C0004, 0x300C000A, 0x300C0020, 0x300C0040, 0x300C0042, 0x300C0050,
    0x300C0055, 0x300C0060, 0x300C0080, 0x300C00B0, 0x300C00F2, 0x300C0111, 0x300C0114, 0x300C0116,
    0x300C0120, 0x300C0125, 0x300C0128, 0x30100001, 0x30100003, 0x30100004, 0x30100007, 0x30100008,
    0x30100009, 0x3010000A, 0x30100011, 0x30100012, 0x30100014, 0x30100016, 0x30100018, 0x30100019,
    0x30100021, 0x30100023, 0x30100024, 0x30100025, 0x30100026, 0x30100027, 0x30100028, 0x3010002A,
    0x3010002B, 0x3010002C, 0x3010002E, 0x3010002F, 0x30100030, 0x30100032, 0x30100044, 0x30100049,
    0x3010004A, 0x3010004B, 0x3010004E, 0x30100055, 0x30100057, 0x3010005B, 0x3010005D, 0x3010005F,
    0x30100060, 0x30100062, 0x30100064, 0x30100065, 0x30100067, 0x30100069, 0x3010006A, 0x3010006B,
    0x3010006C, 0x3010006D, 0x30100070, 0x30100071, 0x30100076, 0x30100078, 0x30100079, 0x30100080,
    0x30100081, 0x30100082, 0x30100087, 0x30100088, 0x30100089, 0x30100091, 0x30100097, 0x30100098,
    0x40080050, 0x40080111, 0x40080117, 0x40080118, 0x40100004, 0x40101001, 0x4010100A, 0x40101011,
    0x40101037, 0x40101038, 0x40101045, 0x40101047, 0x40101064, 0x4010106F, 0x40101071, 0x40101072,
    0x40101076, 0x40101077, 0x40101079, 0x4010107B, 0x4010107D, 0x4FFE0001, 0x52009229, 0x52009230,
    0x54000100, 0xFFFAFFFA,
};

/* The non-sequence tags hdx reads in Implicit VR (extracted keys, command set fields), so a
 * visitor sees their real VR. Sorted for bsearch. */
static const struct vr_entry {
    uint32_t tag;
    char vr[3];
} vr_tags[] = {
    {TAG(0x0000, 0x0000), "UL"}, {TAG(0x0000, 0x0002), "UI"}, {TAG(0x0000, 0x0003), "UI"},
    {TAG(0x0000, 0x0100), "US"}, {TAG(0x0000, 0x0110), "US"}, {TAG(0x0000, 0x0120), "US"},
    {TAG(0x0000, 0x0600), "AE"}, {TAG(0x0000, 0x0700), "US"}, {TAG(0x0000, 0x0800), "US"},
    {TAG(0x0000, 0x0900), "US"}, {TAG(0x0000, 0x0901), "AT"}, {TAG(0x0000, 0x0902), "LO"},
    {TAG(0x0000, 0x1000), "UI"}, {TAG(0x0000, 0x1001), "UI"}, {TAG(0x0000, 0x1020), "US"},
    {TAG(0x0000, 0x1021), "US"}, {TAG(0x0000, 0x1022), "US"}, {TAG(0x0000, 0x1023), "US"},
    {TAG(0x0000, 0x1030), "AE"}, {TAG(0x0000, 0x1031), "US"}, {TAG(0x0002, 0x0001), "OB"},
    {TAG(0x0002, 0x0002), "UI"}, {TAG(0x0002, 0x0003), "UI"}, {TAG(0x0002, 0x0010), "UI"},
    {TAG(0x0002, 0x0012), "UI"}, {TAG(0x0002, 0x0013), "SH"}, {TAG(0x0002, 0x0016), "AE"},
    {TAG(0x0008, 0x0005), "CS"}, {TAG(0x0008, 0x0008), "CS"}, {TAG(0x0008, 0x0012), "DA"},
    {TAG(0x0008, 0x0013), "TM"}, {TAG(0x0008, 0x0016), "UI"}, {TAG(0x0008, 0x0018), "UI"},
    {TAG(0x0008, 0x0020), "DA"}, {TAG(0x0008, 0x0021), "DA"}, {TAG(0x0008, 0x0022), "DA"},
    {TAG(0x0008, 0x0023), "DA"}, {TAG(0x0008, 0x0030), "TM"}, {TAG(0x0008, 0x0031), "TM"},
    {TAG(0x0008, 0x0050), "SH"}, {TAG(0x0008, 0x0060), "CS"}, {TAG(0x0008, 0x0070), "LO"},
    {TAG(0x0008, 0x0080), "LO"}, {TAG(0x0008, 0x0090), "PN"}, {TAG(0x0008, 0x1030), "LO"},
    {TAG(0x0008, 0x103E), "LO"}, {TAG(0x0008, 0x1150), "UI"}, {TAG(0x0008, 0x1155), "UI"},
    {TAG(0x0010, 0x0010), "PN"}, {TAG(0x0010, 0x0020), "LO"}, {TAG(0x0010, 0x0030), "DA"},
    {TAG(0x0010, 0x0040), "CS"}, {TAG(0x0020, 0x000D), "UI"}, {TAG(0x0020, 0x000E), "UI"},
    {TAG(0x0020, 0x0010), "SH"}, {TAG(0x0020, 0x0011), "IS"}, {TAG(0x0020, 0x0013), "IS"},
    {TAG(0x0028, 0x0002), "US"}, {TAG(0x0028, 0x0010), "US"}, {TAG(0x0028, 0x0011), "US"},
    {TAG(0x0028, 0x0100), "US"}, {TAG(0x7FE0, 0x0010), "OW"},
};

static int cmp_u32(const void *k, const void *e)
{
    uint32_t a = *(const uint32_t *)k, b = *(const uint32_t *)e;
    return a < b ? -1 : a > b;
}

static int cmp_vr(const void *k, const void *e)
{
    return cmp_u32(k, &((const struct vr_entry *)e)->tag);
}

static bool dict_is_sq(uint32_t tag)
{
    return bsearch(&tag, sq_tags, sizeof sq_tags / sizeof sq_tags[0], sizeof sq_tags[0], cmp_u32) !=
           NULL;
}

static void dict_vr(uint32_t tag, char vr[3])
{
    const struct vr_entry *v;

    if (dict_is_sq(tag)) {
        memcpy(vr, "SQ", 3);
        return;
    }
    v = bsearch(&tag, vr_tags, sizeof vr_tags / sizeof vr_tags[0], sizeof vr_tags[0], cmp_vr);
    if (v != NULL)
        memcpy(vr, v->vr, 3);
    else if ((tag & 0xFFFF) == 0)
        memcpy(vr, "UL", 3); /* group length (PS3.5 7.2) */
    else
        memcpy(vr, "UN", 3);
}

/* ---- element headers ------------------------------------------------------------------ */

static bool vr_long_form(const char vr[3])
{
    static const char long_vrs[][3] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ",
                                       "SV", "UC", "UN", "UR", "UT", "UV"};
    for (size_t i = 0; i < sizeof long_vrs / sizeof long_vrs[0]; i++)
        if (memcmp(vr, long_vrs[i], 2) == 0) return true;
    return false;
}

static int rd16(struct hdx_dcur *c, bool be, uint16_t *v)
{
    return be ? hdx_dcur_u16be(c, v) : hdx_dcur_u16le(c, v);
}

static int rd32(struct hdx_dcur *c, bool be, uint32_t *v)
{
    return be ? hdx_dcur_u32be(c, v) : hdx_dcur_u32le(c, v);
}

/* Reads tag, VR (explicit only, and never for group FFFE: PS3.5 7.5) and length. Returns
 * NULL, or the fixed reason. */
static const char *read_header(struct hdx_dcur *c, enum hdx_ds_syntax syn, struct hdx_ds_elem *e)
{
    bool be = syn == HDX_DS_EXPLICIT_BE;
    const uint8_t *vr;
    uint16_t len16;

    if (rd16(c, be, &e->group) != 0 || rd16(c, be, &e->element) != 0)
        return "truncated element tag";
    e->vr[0] = '\0';
    if (e->group == 0xFFFE) {
        if (rd32(c, be, &e->length) != 0) return "truncated item header";
        return NULL;
    }
    if (syn == HDX_DS_IMPLICIT_LE) {
        if (hdx_dcur_u32le(c, &e->length) != 0) return "truncated element header";
        dict_vr(TAG(e->group, e->element), e->vr);
        return NULL;
    }
    if (hdx_dcur_bytes(c, 2, &vr) != 0) return "truncated element header";
    if (vr[0] < 'A' || vr[0] > 'Z' || vr[1] < 'A' || vr[1] > 'Z') return "bad VR";
    e->vr[0] = (char)vr[0];
    e->vr[1] = (char)vr[1];
    e->vr[2] = '\0';
    if (vr_long_form(e->vr)) {
        if (hdx_dcur_skip(c, 2) != 0 || rd32(c, be, &e->length) != 0)
            return "truncated element header";
    } else {
        if (rd16(c, be, &len16) != 0) return "truncated element header";
        e->length = len16;
    }
    return NULL;
}

/* ---- the walker ----------------------------------------------------------------------- */

enum frame_kind { F_ROOT, F_ITEM, F_SEQ, F_FRAGS };

struct frame {
    uint8_t kind;      /* enum frame_kind */
    uint8_t syntax;    /* of the elements inside (CP-246 switches it) */
    uint8_t undefined; /* closed by a delimiter, not by reaching end */
    unsigned depth;    /* of what is directly inside */
    size_t end;        /* own end if defined, else the parent's */
};

struct walk {
    const uint8_t *p;
    struct hdx_ds_error *err;
    size_t count, max_elements;
};

static int refuse(struct walk *w, const char *why, size_t off)
{
    if (w->err != NULL) {
        w->err->why = why;
        w->err->offset = off;
    }
    return HDX_E_INVAL;
}

static int emit(struct walk *w, hdx_ds_visit visit, void *arg, const struct hdx_ds_elem *e)
{
    int rc;

    if (++w->count > w->max_elements)
        return refuse(w, "more than max_elements elements", e->offset);
    if (visit == NULL) return 0;
    rc = visit(arg, e);
    if (rc < 0 && w->err != NULL && w->err->why == NULL) {
        w->err->why = "refused by the visitor";
        w->err->offset = e->offset;
    }
    return rc;
}

static bool valid_syntax(enum hdx_ds_syntax s)
{
    return s == HDX_DS_IMPLICIT_LE || s == HDX_DS_EXPLICIT_LE || s == HDX_DS_EXPLICIT_BE;
}

int hdx_ds_walk(const uint8_t *p, size_t n, enum hdx_ds_syntax syntax,
                const struct hdx_ds_limits *lim, hdx_ds_visit visit, void *arg,
                struct hdx_ds_error *err)
{
    struct hdx_ds_limits def;
    struct frame st[2 * DS_DEPTH_CAP + 2];
    size_t top = 0, pos = 0;
    unsigned max_depth;
    struct walk w = {p, err, 0, 0};
    int rc;

    if (err != NULL) {
        err->why = NULL;
        err->offset = 0;
    }
    if (lim == NULL) {
        hdx_ds_limits_default(&def);
        lim = &def;
    }
    if ((p == NULL && n > 0) || !valid_syntax(syntax)) return refuse(&w, "bad argument", 0);
    w.max_elements = lim->max_elements;
    max_depth = lim->max_depth < DS_DEPTH_CAP ? lim->max_depth : DS_DEPTH_CAP;
    st[0] = (struct frame){F_ROOT, (uint8_t)syntax, 0, 0, n};

    for (;;) {
        struct frame *f = &st[top];
        struct hdx_ds_elem e;
        struct hdx_dcur c;
        const char *why;
        size_t hdr;

        if (pos == f->end) {
            if (f->undefined) return refuse(&w, "undefined length not closed by a delimiter", pos);
            if (top == 0) return HDX_OK;
            top--;
            continue;
        }
        memset(&e, 0, sizeof e);
        e.offset = pos;
        c = hdx_dcur_make(p + pos, f->end - pos);
        why = read_header(&c, (enum hdx_ds_syntax)f->syntax, &e);
        if (why != NULL) return refuse(&w, why, pos);
        hdr = (f->end - pos) - hdx_dcur_left(&c);
        uint32_t tag = TAG(e.group, e.element);

        if (e.group == 0xFFFE) {
            bool in_seq = f->kind == F_SEQ || f->kind == F_FRAGS;
            e.depth = f->depth;
            if (tag == TAG_ITEM) {
                if (!in_seq) return refuse(&w, "item outside a sequence", pos);
                if (f->depth > max_depth) return refuse(&w, "nesting past max_depth", pos);
                if (e.length != HDX_DS_UNDEFINED) {
                    if (e.length > DS_LENGTH_MAX) return refuse(&w, "length out of range", pos);
                    if (e.length > lim->max_value) return refuse(&w, "length over max_value", pos);
                    if (e.length > hdx_dcur_left(&c))
                        return refuse(&w, "length overruns its parent", pos);
                } else if (f->kind == F_FRAGS) {
                    return refuse(&w, "pixel data fragment of undefined length", pos);
                }
                if ((rc = emit(&w, visit, arg, &e)) != 0) return rc < 0 ? rc : HDX_OK;
                pos += hdr;
                if (f->kind == F_FRAGS) {
                    pos += e.length; /* fragments are never decoded (PS3.5 A.4) */
                    continue;
                }
                st[++top] =
                    (struct frame){F_ITEM, f->syntax, e.length == HDX_DS_UNDEFINED, f->depth,
                                   e.length == HDX_DS_UNDEFINED ? f->end : pos + e.length};
                continue;
            }
            bool closes = tag == TAG_ITEM_DELIM  ? f->kind == F_ITEM && f->undefined
                          : tag == TAG_SEQ_DELIM ? in_seq && f->undefined
                                                 : false;
            if (tag != TAG_ITEM_DELIM && tag != TAG_SEQ_DELIM)
                return refuse(&w, "unknown item tag", pos);
            if (!closes) return refuse(&w, "delimiter closes nothing", pos);
            /* Nothing is visited past max_depth, an empty sequence's delimiter included. */
            if (f->depth > max_depth) return refuse(&w, "nesting past max_depth", pos);
            if (e.length != 0) return refuse(&w, "delimiter with a non-zero length", pos);
            if ((rc = emit(&w, visit, arg, &e)) != 0) return rc < 0 ? rc : HDX_OK;
            pos += hdr;
            top--;
            continue;
        }

        if (f->kind == F_SEQ || f->kind == F_FRAGS)
            return refuse(&w, "element in a sequence outside an item", pos);
        e.depth = f->depth;
        bool explicit_vr = f->syntax != HDX_DS_IMPLICIT_LE;
        if (e.length == HDX_DS_UNDEFINED) {
            uint8_t kind, syn = f->syntax;
            if (tag == TAG_PIXEL_DATA &&
                (!explicit_vr || strcmp(e.vr, "OB") == 0 || strcmp(e.vr, "OW") == 0)) {
                kind = F_FRAGS;
                if (!explicit_vr) memcpy(e.vr, "OB", 3);
            } else if (!explicit_vr || strcmp(e.vr, "SQ") == 0 || strcmp(e.vr, "UN") == 0) {
                kind = F_SEQ;
                if (explicit_vr && strcmp(e.vr, "UN") == 0) syn = HDX_DS_IMPLICIT_LE;
                if (!explicit_vr) memcpy(e.vr, "SQ", 3);
            } else {
                return refuse(&w, "undefined length for a VR that cannot have one", pos);
            }
            if ((rc = emit(&w, visit, arg, &e)) != 0) return rc < 0 ? rc : HDX_OK;
            pos += hdr;
            st[++top] = (struct frame){kind, syn, 1, f->depth + 1, f->end};
            continue;
        }
        if (e.length > DS_LENGTH_MAX) return refuse(&w, "length out of range", pos);
        if (e.length > lim->max_value) return refuse(&w, "length over max_value", pos);
        if (e.length > hdx_dcur_left(&c)) return refuse(&w, "length overruns its parent", pos);
        bool is_sq = strcmp(e.vr, "SQ") == 0; /* implicit: from the dictionary */
        if (!is_sq) {
            (void)hdx_dcur_bytes(&c, e.length, &e.value); /* checked just above */
            e.value_len = e.length;
        }
        if ((rc = emit(&w, visit, arg, &e)) != 0) return rc < 0 ? rc : HDX_OK;
        pos += hdr;
        if (is_sq)
            st[++top] = (struct frame){F_SEQ, f->syntax, 0, f->depth + 1, pos + e.length};
        else
            pos += e.length;
    }
}

/* ---- keys ----------------------------------------------------------------------------- */

#define KEY(g, e, field)                                                                           \
    {                                                                                              \
        TAG(g, e), offsetof(struct hdx_dcm_keys, field), sizeof(((struct hdx_dcm_keys *)0)->field) \
    }

static const struct key_field {
    uint32_t tag;
    size_t off, size;
} key_fields[] = {
    KEY(0x0008, 0x0005, charset),         KEY(0x0008, 0x0016, sop_class),
    KEY(0x0008, 0x0018, sop_instance),    KEY(0x0008, 0x0020, study_date),
    KEY(0x0008, 0x0021, series_date),     KEY(0x0008, 0x0030, study_time),
    KEY(0x0008, 0x0050, accession),       KEY(0x0008, 0x0060, modality),
    KEY(0x0008, 0x0090, referring),       KEY(0x0008, 0x1030, study_description),
    KEY(0x0010, 0x0010, patient_name),    KEY(0x0010, 0x0020, patient_id),
    KEY(0x0010, 0x0030, birth_date),      KEY(0x0010, 0x0040, sex),
    KEY(0x0020, 0x000D, study_uid),       KEY(0x0020, 0x000E, series_uid),
    KEY(0x0020, 0x0010, study_id),        KEY(0x0020, 0x0011, series_number),
    KEY(0x0020, 0x0013, instance_number),
};

struct extract_ctx {
    struct hdx_dcm_keys *k;
    struct hdx_ds_error *err;
    uint32_t seen; /* bit i: key_fields[i] already taken */
};

/* Trailing spaces and NULs are padding (PS3.5 6.2, 7.1.1); leading spaces are kept, as
 * dcmdump shows them. Returns NULL or the reason the value cannot be a key. */
static const char *copy_key(const uint8_t *v, size_t len, char *out, size_t size)
{
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\0'))
        len--;
    if (len >= size) return "value too long";
    if (len > 0 && memchr(v, '\0', len) != NULL) return "NUL inside a value";
    if (len > 0) memcpy(out, v, len);
    out[len] = '\0';
    return NULL;
}

/* "YYYY.MM.DD", padding allowed after it. */
static int acr_nema_date(const uint8_t *v, size_t len)
{
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\0'))
        len--;
    if (len != 10 || v[4] != '.' || v[7] != '.') return 0;
    for (size_t i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (v[i] < '0' || v[i] > '9')) return 0;
    return 1;
}

static int extract_visit(void *arg, const struct hdx_ds_elem *e)
{
    struct extract_ctx *x = arg;
    uint32_t tag = TAG(e->group, e->element);
    const char *why;

    if (e->depth != 0) return 0;
    for (size_t i = 0; i < sizeof key_fields / sizeof key_fields[0]; i++) {
        if (key_fields[i].tag != tag) continue;
        if (x->seen & (1u << i)) return 0; /* the first occurrence is the one indexed */
        x->seen |= 1u << i;
        if (e->value == NULL && e->length != 0) {
            why = "key element is not a value";
        } else if (key_fields[i].size == 9 && acr_nema_date(e->value, e->value_len)) {
            /* a date in the retired ACR-NEMA form YYYY.MM.DD (PS3.5 6.2, DA): kept as the
             * YYYYMMDD it stands for, rather than refusing an old instance over it */
            char *d = (char *)x->k + key_fields[i].off;
            memcpy(d, e->value, 4);
            memcpy(d + 4, e->value + 5, 2);
            memcpy(d + 6, e->value + 8, 2);
            d[8] = '\0';
            why = NULL;
        } else {
            why = copy_key(e->value, e->value_len, (char *)x->k + key_fields[i].off,
                           key_fields[i].size);
        }
        if (why != NULL) {
            if (x->err != NULL) {
                x->err->why = why;
                x->err->offset = e->offset;
            }
            return HDX_E_INVAL;
        }
        return 0;
    }
    return 0;
}

int hdx_dcm_extract(const uint8_t *p, size_t n, enum hdx_ds_syntax syntax,
                    const struct hdx_ds_limits *lim, struct hdx_dcm_keys *k,
                    struct hdx_ds_error *err)
{
    struct extract_ctx x = {k, err, 0};
    int rc;

    if (k == NULL) return HDX_E_INVAL;
    memset(k, 0, sizeof *k);
    rc = hdx_ds_walk(p, n, syntax, lim, extract_visit, &x, err);
    if (rc != HDX_OK) memset(k, 0, sizeof *k);
    return rc;
}

/* ---- Part 10 header ------------------------------------------------------------------- */

#define PREAMBLE 128
#define META_START (PREAMBLE + 4)

static int file_refuse(struct hdx_dcm_file *f, struct hdx_ds_error *err, const char *why,
                       size_t off)
{
    memset(f, 0, sizeof *f);
    if (err != NULL) {
        err->why = why;
        err->offset = off;
    }
    return HDX_E_INVAL;
}

/* Group 0002 is always Explicit VR LE (PS3.10 7.1) and holds no sequence. Without a group
 * length (PS3.10 makes it type 1, but dcmtk and pydicom read files that lack it), the group
 * ends at the first tag of another group. */
int hdx_dcm_file_parse(const uint8_t *p, size_t n, struct hdx_dcm_file *f, struct hdx_ds_error *err)
{
    size_t pos = META_START, end = n;
    bool have_len = false;

    if (f == NULL) return HDX_E_INVAL;
    memset(f, 0, sizeof *f);
    if (err != NULL) {
        err->why = NULL;
        err->offset = 0;
    }
    if (p == NULL || n < META_START || memcmp(p + PREAMBLE, "DICM", 4) != 0)
        return file_refuse(f, err, "no DICM prefix at offset 128", 0);

    while (pos < end) {
        struct hdx_dcur c = hdx_dcur_make(p + pos, end - pos);
        struct hdx_ds_elem e;
        const char *why;
        uint16_t group;

        /* Peek the group: a data set element ends a meta group that has no length. */
        if (!have_len && (hdx_dcur_u16le(&c, &group) != 0 || group != 0x0002)) break;
        c = hdx_dcur_make(p + pos, end - pos);
        memset(&e, 0, sizeof e);
        why = read_header(&c, HDX_DS_EXPLICIT_LE, &e);
        if (why != NULL) return file_refuse(f, err, why, pos);
        if (e.group != 0x0002)
            return file_refuse(f, err, "meta group holds a non-0002 element", pos);
        if (e.length == HDX_DS_UNDEFINED || strcmp(e.vr, "SQ") == 0)
            return file_refuse(f, err, "meta element of undefined length", pos);
        if (hdx_dcur_bytes(&c, e.length, &e.value) != 0)
            return file_refuse(f, err, "meta element overruns the group", pos);
        size_t next = pos + (end - pos - hdx_dcur_left(&c));
        char *dst = NULL;
        switch (e.element) {
        case 0x0000: {
            if (pos != META_START || e.length != 4 || strcmp(e.vr, "UL") != 0)
                return file_refuse(f, err, "bad meta group length", pos);
            uint32_t gl = (uint32_t)e.value[0] | (uint32_t)e.value[1] << 8 |
                          (uint32_t)e.value[2] << 16 | (uint32_t)e.value[3] << 24;
            if (gl > n - next)
                return file_refuse(f, err, "meta group length overruns the file", pos);
            end = next + gl;
            have_len = true;
            break;
        }
        case 0x0002:
            dst = f->sop_class;
            break;
        case 0x0003:
            dst = f->sop_instance;
            break;
        case 0x0010:
            dst = f->ts;
            break;
        default:
            break;
        }
        if (dst != NULL) {
            why = copy_key(e.value, e.length, dst, HDX_DS_UID_MAX + 1);
            if (why != NULL) return file_refuse(f, err, why, pos);
        }
        pos = next;
    }
    if (f->ts[0] == '\0') return file_refuse(f, err, "meta group has no transfer syntax", pos);
    f->dataset_off = pos;
    return HDX_OK;
}

struct obuf {
    uint8_t *p;
    size_t cap, n;
    bool bad;
};

static void put(struct obuf *o, const void *v, size_t len)
{
    if (o->bad || len > o->cap - o->n) {
        o->bad = true;
        return;
    }
    memcpy(o->p + o->n, v, len);
    o->n += len;
}

static void put_le16(struct obuf *o, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(o, b, 2);
}

static void put_le32(struct obuf *o, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(o, b, 4);
}

/* An Explicit VR LE string element, padded to even length (PS3.5 7.1.1). */
static void put_str(struct obuf *o, uint16_t element, const char *vr, const char *s, char pad)
{
    size_t len = strlen(s);

    put_le16(o, 0x0002);
    put_le16(o, element);
    put(o, vr, 2);
    put_le16(o, (uint16_t)(len + (len & 1)));
    put(o, s, len);
    if (len & 1) put(o, &pad, 1);
}

size_t hdx_dcm_meta_build(const char *sop_class, const char *sop_instance, const char *ts,
                          const char *impl_class, const char *impl_version, const char *source_ae,
                          uint8_t *out, size_t cap)
{
    static const uint8_t version[2] = {0x00, 0x01};
    struct obuf o = {out, cap, 0, out == NULL};

    if (sop_class == NULL || sop_instance == NULL || ts == NULL || impl_class == NULL) return 0;
    if (impl_version == NULL) impl_version = "";
    if (source_ae == NULL) source_ae = "";
    /* Type 1 elements (PS3.10 7.1) may not be empty; SH and AE hold 16 characters. */
    if (strnlen(sop_class, HDX_DS_UID_MAX + 1) > HDX_DS_UID_MAX || sop_class[0] == '\0' ||
        strnlen(sop_instance, HDX_DS_UID_MAX + 1) > HDX_DS_UID_MAX || sop_instance[0] == '\0' ||
        strnlen(ts, HDX_DS_UID_MAX + 1) > HDX_DS_UID_MAX || ts[0] == '\0' ||
        strnlen(impl_class, HDX_DS_UID_MAX + 1) > HDX_DS_UID_MAX || impl_class[0] == '\0' ||
        strnlen(impl_version, 17) > 16 || strnlen(source_ae, 17) > 16)
        return 0;

    uint8_t zero[PREAMBLE] = {0};
    put(&o, zero, PREAMBLE);
    put(&o, "DICM", 4);
    size_t gl_at = o.n + 8;
    put_le16(&o, 0x0002);
    put_le16(&o, 0x0000);
    put(&o, "UL", 2);
    put_le16(&o, 4);
    put_le32(&o, 0); /* patched below */
    size_t group_start = o.n;
    put_le16(&o, 0x0002);
    put_le16(&o, 0x0001);
    put(&o, "OB\0\0", 4);
    put_le32(&o, 2);
    put(&o, version, 2);
    put_str(&o, 0x0002, "UI", sop_class, '\0');
    put_str(&o, 0x0003, "UI", sop_instance, '\0');
    put_str(&o, 0x0010, "UI", ts, '\0');
    put_str(&o, 0x0012, "UI", impl_class, '\0');
    if (impl_version[0] != '\0') put_str(&o, 0x0013, "SH", impl_version, ' ');
    if (source_ae[0] != '\0') put_str(&o, 0x0016, "AE", source_ae, ' ');
    if (o.bad) return 0;
    uint32_t gl = (uint32_t)(o.n - group_start);
    out[gl_at] = (uint8_t)gl;
    out[gl_at + 1] = (uint8_t)(gl >> 8);
    out[gl_at + 2] = (uint8_t)(gl >> 16);
    out[gl_at + 3] = (uint8_t)(gl >> 24);
    return o.n;
}

/* ---- deflate -------------------------------------------------------------------------- */

int hdx_ds_inflate(const uint8_t *in, size_t len, size_t max_out, uint8_t **out, size_t *out_len)
{
    z_stream z;
    uint8_t *buf = NULL;
    size_t cap, used = 0;
    int zrc, rc = HDX_E_INVAL;

    if (out == NULL || out_len == NULL || (in == NULL && len > 0)) return HDX_E_INVAL;
    *out = NULL;
    *out_len = 0;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, -15) != Z_OK) return HDX_E_NOMEM;
    /* Deflated data sets shrink 3-10x; start there and double, never past max_out. */
    cap = len < (SIZE_MAX / 4) ? len * 4 : SIZE_MAX;
    if (cap < 4096) cap = 4096;
    if (cap > max_out) cap = max_out;
    buf = malloc(cap > 0 ? cap : 1);
    if (buf == NULL) {
        rc = HDX_E_NOMEM;
        goto out;
    }
    z.next_in = (Bytef *)(uintptr_t)in; /* zlib does not write through next_in */
    for (;;) {
        uInt in_chunk = len - (size_t)((const uint8_t *)z.next_in - in) > UINT32_MAX
                            ? UINT32_MAX
                            : (uInt)(len - (size_t)((const uint8_t *)z.next_in - in));
        uint8_t probe;
        bool probing = used == cap && cap == max_out;

        z.avail_in = in_chunk;
        if (used == cap && !probing) {
            size_t ncap = cap > max_out / 2 ? max_out : cap * 2;
            uint8_t *nb = realloc(buf, ncap > 0 ? ncap : 1);
            if (nb == NULL) {
                rc = HDX_E_NOMEM;
                goto out;
            }
            buf = nb;
            cap = ncap;
        }
        if (probing) {
            /* Full at max_out: one more byte out means the data set is too big. */
            z.next_out = &probe;
            z.avail_out = 1;
        } else {
            z.next_out = buf + used;
            z.avail_out = cap - used > UINT32_MAX ? UINT32_MAX : (uInt)(cap - used);
        }
        uInt before = z.avail_out;
        zrc = inflate(&z, Z_NO_FLUSH);
        size_t made = before - z.avail_out;
        if (probing && made > 0) {
            rc = HDX_E_TOOBIG;
            goto out;
        }
        used += probing ? 0 : made;
        if (zrc == Z_STREAM_END) break;
        if (zrc == Z_BUF_ERROR && made == 0 && z.avail_in == 0) goto out; /* truncated */
        if (zrc != Z_OK && zrc != Z_BUF_ERROR) goto out;
        if (probing && made == 0 && z.avail_in == 0) goto out; /* no progress possible */
    }
    /* PS3.5 A.5: an odd-length stream is padded with one NUL. Some writers (the sample
     * image_dfl.dcm among them) append a gzip trailer, CRC-32 and size (RFC 1952 2.3.1):
     * accepted only when both match what was inflated. Anything else is refused. */
    size_t rest = len - (size_t)((const uint8_t *)z.next_in - in);
    if (rest == 8 || rest == 9) {
        struct hdx_dcur t = hdx_dcur_make(z.next_in, rest);
        uint32_t crc, isize;
        const uint8_t *pad;
        (void)hdx_dcur_u32le(&t, &crc);
        (void)hdx_dcur_u32le(&t, &isize);
        if (crc != (uint32_t)crc32_z(0, buf, used) || isize != (uint32_t)used) goto out;
        if (rest == 9 && (hdx_dcur_bytes(&t, 1, &pad) != 0 || pad[0] != 0)) goto out;
    } else if (rest > 1 || (rest == 1 && *z.next_in != 0)) {
        goto out;
    }
    *out = buf;
    *out_len = used;
    buf = NULL;
    rc = HDX_OK;
out:
    inflateEnd(&z);
    free(buf);
    return rc;
}

enum hdx_ds_syntax hdx_ds_syntax_of(const char *ts_uid, int *deflated)
{
    if (deflated != NULL) *deflated = 0;
    if (ts_uid == NULL) return HDX_DS_EXPLICIT_LE;
    if (strcmp(ts_uid, "1.2.840.10008.1.2") == 0) return HDX_DS_IMPLICIT_LE;
    if (strcmp(ts_uid, "1.2.840.10008.1.2.2") == 0) return HDX_DS_EXPLICIT_BE;
    if (strcmp(ts_uid, "1.2.840.10008.1.2.1.99") == 0 && deflated != NULL) *deflated = 1;
    return HDX_DS_EXPLICIT_LE;
}
