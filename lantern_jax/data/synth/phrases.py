"""Domain tables and phrase banks: education per occupation group, posting boilerplate, profile
sentences, names, and the grammar helpers that fit task statements into them."""
from __future__ import annotations

import re


# Typical entry education per SOC major group: (level, fields of study that fit the group).
GROUP_EDUCATION = {
    "11": ("bachelor", ["Business Administration", "Management", "Economics", "Finance"]),
    "13": ("bachelor", ["Finance", "Accounting", "Business Administration", "Economics"]),
    "15": ("bachelor", ["Computer Science", "Software Engineering", "Information Systems", "Mathematics",
                        "Statistics"]),
    "17": ("bachelor", ["Mechanical Engineering", "Electrical Engineering", "Civil Engineering",
                        "Industrial Engineering", "Architecture"]),
    "19": ("master", ["Biology", "Chemistry", "Physics", "Environmental Science", "Psychology",
                      "Economics", "Geology"]),
    "21": ("bachelor", ["Social Work", "Psychology", "Counseling", "Sociology"]),
    "23": ("bachelor", ["Law", "Legal Studies", "Political Science"]),
    "25": ("bachelor", ["Education", "Early Childhood Education", "English", "Mathematics", "History"]),
    "27": ("bachelor", ["Graphic Design", "Communications", "Journalism", "Fine Arts", "Music",
                        "Film Studies"]),
    "29": ("bachelor", ["Nursing", "Health Sciences", "Pharmacy", "Biology", "Medicine"]),
    "31": ("associate", ["Health Sciences", "Medical Assisting", "Nursing", "Physical Therapy Assisting"]),
    "33": ("high_school", ["Criminal Justice", "Fire Science", "Emergency Management"]),
    "35": ("high_school", ["Culinary Arts", "Hospitality Management"]),
    "37": ("high_school", ["Horticulture", "Facilities Management"]),
    "39": ("high_school", ["Cosmetology", "Recreation Management", "Early Childhood Education"]),
    "41": ("high_school", ["Marketing", "Business Administration", "Communications"]),
    "43": ("high_school", ["Business Administration", "Office Administration", "Accounting"]),
    "45": ("high_school", ["Agriculture", "Forestry", "Animal Science"]),
    "47": ("high_school", ["Construction Management", "Construction Technology"]),
    "49": ("associate", ["Industrial Maintenance", "Automotive Technology", "Electronics Technology"]),
    "51": ("high_school", ["Manufacturing Technology", "Industrial Technology", "Welding Technology"]),
    "53": ("high_school", ["Logistics", "Supply Chain Management", "Aviation"]),
}
# Occupations whose entry level differs from their group's (matched on the O*NET title).
TITLE_EDUCATION = ((re.compile(r"Physician|Surgeon|Psychiatrist|Dentist|Pediatrician|Optometrist|"
                               r"Podiatrist|Veterinarian|Anesthesiologist|Obstetrician"), "doctorate"),
                   (re.compile(r"Lawyer|Judge"), "doctorate"),
                   (re.compile(r"Postsecondary|Scientist|Economist|Psychologist|Nurse Practitioner|"
                               r"Physician Assistant|Pharmacist"), "master"),
                   (re.compile(r"Engineer|Architect|Analyst|Accountant|Manager"), "bachelor"),
                   (re.compile(r"Technician|Technologist|Paralegal|Assistant"), "associate"))
DEGREE_NAMES = {"high_school": ["High School Diploma"], "associate": ["Associate of Applied Science",
                "Associate of Science"], "bachelor": ["Bachelor of Science", "Bachelor of Arts"],
                "master": ["Master of Science", "Master of Arts", "Master of Business Administration"],
                "doctorate": ["Doctor of Philosophy"]}
LEVEL_PHRASE = {"high_school": "High school diploma or equivalent", "associate": "Associate degree",
                "bachelor": "Bachelor's degree", "master": "Master's degree", "doctorate": "Doctoral degree"}
ARTS_FIELDS = {"English", "History", "Fine Arts", "Music", "Communications", "Journalism", "Film Studies",
               "Psychology", "Sociology", "Political Science", "Social Work", "Education", "Counseling",
               "Early Childhood Education", "Legal Studies", "General Studies"}
BUSINESS_FIELDS = {"Business Administration", "Management", "Finance", "Accounting", "Marketing"}
ONSITE_GROUPS = {"29", "31", "33", "35", "37", "39", "45", "47", "49", "51", "53"}
TEAM_NAMES = {"11": "leadership", "13": "finance and operations", "15": "engineering",
              "17": "engineering", "19": "research", "21": "community programs", "23": "legal",
              "25": "education", "27": "creative", "29": "clinical", "31": "care", "33": "safety and security",
              "35": "kitchen", "37": "facilities", "39": "guest services", "41": "sales", "43": "operations",
              "45": "field operations", "47": "construction", "49": "maintenance", "51": "production",
              "53": "logistics"}
BASE_SALARY = {"11": 130, "13": 85, "15": 120, "17": 100, "19": 90, "21": 55, "23": 95, "25": 60, "27": 70,
               "29": 95, "31": 38, "33": 55, "35": 34, "37": 36, "39": 35, "41": 60, "43": 45, "45": 36,
               "47": 55, "49": 55, "51": 45, "53": 48}  # thousand USD a year, mid-level

FIRST_NAMES = ("Aisha", "Alejandro", "Amara", "Andrei", "Anika", "Ben", "Carmen", "Chen", "Chloe", "Daniel",
               "Dario", "Elena", "Emeka", "Fatima", "Freya", "Gabriel", "Hana", "Hiroshi", "Imani", "Isabel",
               "Jamal", "Javier", "Jin", "Julia", "Kofi", "Lars", "Layla", "Leila", "Lucas", "Mai", "Marco",
               "Maria", "Mateo", "Meera", "Mohammed", "Nadia", "Noah", "Olga", "Omar", "Priya", "Rafael",
               "Rina", "Rohan", "Sakura", "Samuel", "Sara", "Sofia", "Tariq", "Thandi", "Tomás", "Valentina",
               "Wei", "Yara", "Yusuf", "Zoe")
LAST_NAMES = ("Abebe", "Adeyemi", "Ahmed", "Andersson", "Bianchi", "Chen", "Costa", "Das", "Dubois",
              "Fernández", "Fischer", "García", "Gupta", "Haddad", "Hansen", "Hernández", "Ito", "Jensen",
              "Johnson", "Kaur", "Kim", "Kowalski", "Kumar", "Larsen", "Lee", "Lopez", "Martin", "Mendes",
              "Murphy", "Nakamura", "Nguyen", "Novak", "Okafor", "Olsen", "Patel", "Petrov", "Ramírez",
              "Rossi", "Santos", "Schmidt", "Silva", "Singh", "Smith", "Suzuki", "Tanaka", "Taylor",
              "Thompson", "Walker", "Wang", "Williams", "Yilmaz", "Zhang")
SCHOOL_PATTERNS = ("University of {city}", "{city} State University", "{city} Community College",
                   "{city} Institute of Technology", "{city} Technical College")

ABOUT_COMPANY = (
    "{company} is a team of builders, operators and problem solvers. We move quickly, we sweat the "
    "details, and we measure ourselves by the difference our work makes for the people we serve. "
    "Our teams work across offices and time zones and share one culture of ownership and candor.",
    "At {company}, we believe that great products and great services come from people who care. "
    "Since our founding we have grown into an organization trusted by customers around the world, "
    "and we are still investing in the people and the tools that got us here.",
    "{company} helps its customers do their best work. We are a growing company with a long-term "
    "view: we hire thoughtfully, we give people room to learn, and we celebrate the wins along the "
    "way. Join us and help shape what comes next.",
    "Founded on the idea that work should be both meaningful and enjoyable, {company} brings "
    "together talented people from many backgrounds. We value curiosity, clear communication and "
    "a healthy respect for the craft, whatever the team.",
)
ROLE_INTRO = (
    "We are looking for {a_title} to join our {team} team{where}. You will work closely with "
    "colleagues across the business and have a direct impact on how we deliver for our customers.",
    "As {a_title} at {company}, you will be part of a collaborative {team} team{where}. This is a "
    "great opportunity for someone who enjoys variety, ownership and steady growth.",
    "Our {team} team{where} is growing, and we are hiring {a_title} to help us raise the bar. You "
    "will take on meaningful work from your first weeks and grow with the team.",
)
BENEFITS = (
    "Competitive salary and an annual performance bonus", "Comprehensive medical, dental and vision coverage",
    "Retirement plan with a company match", "Generous paid time off and paid holidays",
    "Paid parental leave for all parents", "A yearly learning and development budget",
    "Flexible working hours", "Wellness programs and an employee assistance program",
    "Commuter benefits", "Employee discounts and team events", "Life and disability insurance",
    "Home office setup allowance", "Mental health support", "Tuition reimbursement",
)
EEO = (
    "{company} is an equal opportunity employer. We celebrate diversity and are committed to creating "
    "an inclusive environment for all employees. All qualified applicants will receive consideration "
    "for employment without regard to race, color, religion, sex, sexual orientation, gender identity, "
    "national origin, disability, age or veteran status.",
    "We are proud to be an equal opportunity workplace. Employment decisions at {company} are made "
    "without regard to race, color, religion, sex, national origin, age, disability, genetic "
    "information, veteran status or any other status protected by law. If you need an accommodation "
    "during the hiring process, please let us know.",
    "{company} provides equal employment opportunities to all applicants and employees. We do not "
    "discriminate on the basis of any protected characteristic, and we welcome applicants of every "
    "background. Reasonable accommodations are available on request.",
)
CLOSING = (
    "Do not meet every single point? Studies show that many people hold back unless they tick every "
    "box. If you are excited about this role, we encourage you to apply anyway.",
    "To apply, submit your resume through our careers page. Our recruiting team reviews every "
    "application and will get back to you within two weeks.",
    "Applications are reviewed on a rolling basis. We look forward to hearing from you.",
)
HEADINGS = {
    "about": ("About {company}", "Who we are", "About us"),
    "role": ("About the role", "The opportunity", "Your role"),
    "duties": ("What you'll do", "Responsibilities", "Key responsibilities"),
    "required": ("What you'll bring", "Requirements", "Minimum qualifications", "Qualifications"),
    "preferred": ("Nice to have", "Preferred qualifications", "Bonus points"),
    "benefits": ("What we offer", "Benefits", "Perks and benefits"),
    "logistics": ("Location and compensation", "Work arrangement", "Compensation"),
    "eeo": ("Equal opportunity", "Our commitment", "Diversity and inclusion"),
}
SKILL_PHRASES = {
    "verb": ("Proven ability to {s} independently and reliably", "Demonstrated ability to {s} in a busy environment",
             "Confidence to {s} with minimal supervision", "Ability to {s} to a consistently high standard"),
    "noun": ("Hands-on experience with {s} in a professional setting", "Proficiency in {s} and its day-to-day use",
             "Working knowledge of {s} and related best practices", "Solid, practical understanding of {s}",
             "Experience applying {s} to real-world problems"),
}
CERT_PHRASES = ("Active {s}", "Current {s} credential", "{s} (or willingness to obtain it)")

# Sentences that show a skill in a profile, for topic/tool names ("noun") and abilities ("verb").
MET_SKILL_SENTENCES = {
    "noun": ("Used {s} daily to deliver results for the team.", "Applied {s} across several projects.",
             "Relied on {s} in most assignments.", "Brought strong {s} expertise to every project."),
    "verb": ("Was regularly trusted to {s} for the whole team.", "Took the lead whenever we needed to {s}.",
             "Was asked to {s} on a weekly basis.", "Learned to {s} independently and trained new hires to do it."),
    "gerund": ("Spent a large part of each week {s}.", "Became the go-to person for {s}.",
               "Was responsible for {s} across the department."),
}
PARTIAL_SKILL_SENTENCES = {
    "noun": ("Completed an introductory course in {s}.", "Currently learning {s} through online courses.",
             "Some exposure to {s} while supporting a senior colleague.",
             "Basic familiarity with {s} from a short project."),
    "verb": ("Currently learning to {s} under supervision.", "Have occasionally helped colleagues {s}.",
             "Took a short course on how to {s}.", "Starting to {s} with guidance from a mentor."),
    "gerund": ("Some first experience {s} under supervision.", "Recently started {s} as part of a training plan."),
}
PARTIAL_CERT_SENTENCE = "Preparing for the {s} exam, expected {date}."
SUMMARY_OPENERS = ("{title} with {years} of experience, most recently at {company}.",
                   "Experienced {title} ({years}) who enjoys solving practical problems.",
                   "{title} with a track record of {years} in demanding environments.")
SUMMARY_SKILLS = ("Strengths include {skills}.", "Known for {skills}.", "Core skills: {skills}.")

CONTACT_RATE = 0.25
CONTACT_LINES = ("Reach me at {first}.{last}@example.com.", "Call me on +1 555 0{n}.",
                 "Portfolio: https://example.com/{first}-{last}", "Email: {first}{last}@example.org")
IRREGULAR_PAST = {
    "be": "was", "become": "became", "begin": "began", "bind": "bound", "break": "broke", "bring": "brought",
    "build": "built", "buy": "bought", "choose": "chose", "cut": "cut", "deal": "dealt", "dig": "dug",
    "draw": "drew", "drive": "drove", "feed": "fed", "feel": "felt", "fight": "fought", "find": "found",
    "fly": "flew", "forecast": "forecast", "get": "got", "give": "gave", "go": "went", "grind": "ground",
    "grow": "grew", "hang": "hung", "hold": "held", "keep": "kept", "know": "knew", "lay": "laid", "lead": "led",
    "lend": "lent", "let": "let", "make": "made", "meet": "met", "oversee": "oversaw", "pay": "paid",
    "put": "put", "read": "read", "rebuild": "rebuilt", "rewrite": "rewrote", "ride": "rode", "run": "ran",
    "say": "said", "see": "saw", "seek": "sought", "sell": "sold", "send": "sent", "set": "set",
    "shake": "shook", "shoot": "shot", "show": "showed", "sit": "sat", "speak": "spoke", "spend": "spent",
    "spin": "spun", "split": "split", "spread": "spread", "stand": "stood", "strike": "struck", "sweep": "swept",
    "swing": "swung", "take": "took", "teach": "taught", "tell": "told", "think": "thought", "throw": "threw",
    "undergo": "underwent", "understand": "understood", "undertake": "undertook", "weave": "wove",
    "win": "won", "wind": "wound", "withdraw": "withdrew", "write": "wrote",
}
DOUBLING = {"plan", "ship", "stop", "trim", "chip", "plug", "scrub", "mop", "rub", "tap", "pin", "jam", "tag",
            "log", "drop", "grip", "strip", "wrap", "dip", "rig", "refer", "confer", "transfer", "prefer",
            "control", "patrol", "compel", "propel", "admit", "commit", "submit", "permit", "equip", "occur",
            "deter", "program", "travel", "label", "model", "signal", "level", "cancel", "fuel", "total",
            "pat", "pot", "pad", "sum", "shop", "step", "slip", "clip", "skim", "swab", "stab", "knit", "spot",
            "net", "bag", "wed", "dam", "blot", "map", "man"}


def past_tense(sentence: str) -> str:
    """'Review and analyze reports.' -> 'Reviewed and analyzed reports.' (the leading verb list only)."""
    words = sentence.split()

    def past(word: str) -> str:
        bare, tail = re.match(r"([A-Za-z-]+)(.*)", word).groups() if re.match(r"[A-Za-z]", word) else (word, "")
        low = bare.lower()
        if low in IRREGULAR_PAST:
            out = IRREGULAR_PAST[low]
        elif low.endswith("e"):
            out = low + "d"
        elif re.search(r"[^aeiou]y$", low):
            out = low[:-1] + "ied"
        elif low in DOUBLING:
            out = low + low[-1] + "ed"
        else:
            out = low + "ed"
        return (out[:1].upper() + out[1:] if bare[:1].isupper() else out) + tail

    if not words:
        return sentence
    i = 0
    words[0] = past(words[0])
    while i + 1 < len(words):  # 'Plan, direct, or coordinate ...'
        if words[i].endswith(",") and words[i + 1] not in ("or", "and") and words[i + 1].islower():
            words[i + 1] = past(words[i + 1])
            i += 1
        elif words[i + 1] in ("or", "and") and i + 2 < len(words) and (words[i].endswith(",") or i == 0):
            words[i + 2] = past(words[i + 2])
            break
        else:
            break
    return " ".join(words)


def with_article(phrase: str) -> str:
    """Phrase with its indefinite article: 'an atmospheric scientist', 'a software developer'."""
    return f"{'an' if phrase[:1].lower() in 'aeiou' else 'a'} {phrase}"


def title_case(text: str) -> str:
    return " ".join(w if w[:1].isupper() or w.lower() in ("and", "of", "in", "for") else w.capitalize()
                    for w in text.split())
