"""Safety net: spot suicidal distress and abuse in a caller's words, whatever the matcher says.

Missing a caller in despair, or a witness reporting that an elderly or disabled person is
beaten, robbed or left without care, costs far more than handing a caller over for nothing.
The lexical matcher ranks intents by resemblance to examples; people in distress rarely
sound like an example. This module is a high-recall detector written from how callers and
witnesses actually talk ("je vais me foutre en l'air", "j'ai préparé les cachets", "il la
laisse dans ses excréments", "on lui prend son argent"...). When it fires, the matcher hands
over to the critical intent at once (:meth:`faq.matcher.Matcher.match`).

Rules:

- Cues are regular expressions over the folded utterance (lowercase, no accents, elided
  articles and pronouns removed, hesitations dropped), so ``j'en peux plus`` reads
  ``en peux plus`` and ``l'enferme`` reads ``enferme``.
- Clearly benign figures of speech are removed before matching ("je meurs de faim", "ça me
  tue ces démarches", "mort de rire", "du coup", "un coup de fil", "frapper à la porte",
  "j'en ai ma claque", "en finir avec ce dossier"...). Anything else that looks like a cue
  fires: in doubt, a person takes the call.
- Distress is checked before abuse: "elle menace de se tuer" is distress, not a threat.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from faq.normalize import HESITATIONS, fold, strip_elisions, tokenize

DISTRESS = "urgence_detresse_suicidaire"
"""Intent id of suicidal distress."""
ABUSE = "maltraitance"
"""Intent id of abuse or neglect of a vulnerable person."""

# Who a witness talks about: relatives, residents, neighbours, carers (folded, singular or plural).
_PERSON = (
    r"(?:mere|pere|maman|papa|mari|femme|epouse|epoux|fils|fille|frere|soeur|oncle|tante"
    r"|grand ?mere|grand ?pere|grands? parents|parents?|papy|papi|mamie|mamy|voisine?|neveu"
    r"|niece|cousine?|beau pere|belle mere|enfants?|residente?s?|patiente?s?|pensionnaires?"
    r"|dame|monsieur|vieille dame|vieux monsieur|personne agee|personnes agees|beneficiaire"
    r"|majeur protege|usagere?|tuteur|tutrice|curateur|curatrice|aide a domicile"
    r"|auxiliaire(?: de vie)?|aide soignante?|infirmiere?|soignante?s?|personnel|aidant"
    r"|famille|gendre|belle fille|petit fils|petite fille|compagnon|compagne|conjointe?)s?"
)
_POSSESSIVE = r"(?:mon|ma|mes|son|sa|ses|leur|leurs|notre|nos|la|le|les|une|un|cette|ce)"
_MONEY = (
    r"(?:argent|sous|pension|carte bancaire|carte bleue|chequier|cheques|economies|bijoux"
    r"|livret|epargne|code de (?:sa|la|ma|son) carte)"
)
_SELF_HARM_MEANS = (
    r"(?:cachets?|medicaments?|comprimes?|pilules?|somniferes?|calmants?|boites?"
    r"|morphine|corde|fusil|arme|couteau|lames?|gaz)"
)

_DROPPED = (HESITATIONS - {"bon"}) | {"l", "d", "j", "n", "m", "s", "t", "c", "qu"}
"""Hesitations ("bon" kept for "à quoi bon") and elided letters written apart ("l air")."""

_BENIGN = tuple(
    re.compile(p)
    for p in (
        # Figures of speech with "mourir", "tuer", "mort".
        r"\b(?:meurs?|meurt|mourir|mourrai|mourrais|crever|creve) de (?:faim|soif|rire|chaud"
        r"|froid|fatigue|ennui|envie|impatience|honte|trouille|peur)\b",
        r"\bmort(?:e|s)? de (?:rire|fatigue|faim|froid|chaud|honte)\b",
        r"\b(?:ca|cela|elles?|ils?|ces \w+|cette \w+|vous|tu) (?:me|nous)"
        r" (?:tue|tuent|tuez|tues)\b",
        r"\b(?:me|se|nous) tue(?:r|nt)? (?:a la tache|au travail|a vous (?:dire|expliquer)"
        r"|a (?:vous|leur|lui|te)(?: le| la| les)? (?:dire|repeter|expliquer)"
        r"|a repeter|a expliquer)\b",
        r"\btuer le temps\b",
        r"\bmdr\b",
        # "du coup", "un coup de fil"... are not blows.
        r"\b(?:du|tout a|apres|sur le|un petit|encore un|dernier|beau|premier) coup\b",
        r"\bcoups? de (?:fil|telephone|main|pouce|oeil|chance|stress|froid|vent|tete|bol"
        r"|gueule|blues|barre|cafard|mou)\b",
        r"\b(?:frappe|frapper|frappent|frappait|frappais|frappez) (?:a|chez) (?:la|ma|sa|votre"
        r"|leur|notre) porte\b",
        r"\b(?:en ai|en avons|en a) (?:ma|sa|notre|leur) claque\b",
        # "en finir avec ce dossier" is impatience, not despair.
        r"\ben (?:finir|terminer) avec (?:ce|ces|cette|le|les|la|mon|ma|mes|votre|vos)"
        r" (?:dossier|demarches?|papiers?|paperasse|formulaires?|histoire|probleme|affaire"
        r"|demande|attente|procedure|courrier)s?\b",
        # "abuser" also means to overdo (complaints about delays).
        r"\b(?:vous|ils|elles|on) abuse(?:z|nt)?\b(?! de)",
        r"\bje me suis enferme(?:e)? dehors\b",
        r"\bjet\w* a eau\b",
        r"\bno(?:y|i)\w* (?:dans|sous) (?:les|la|le|ces|des) (?:papiers|paperasse|demarches"
        r"|dossiers|formulaires|courriers)\b",
        r"\ba tous les coups\b",
        r"\bfrapp\w* (?:par|d) (?:un|une|la|le) (?:avc|maladie|cancer|handicap|deuil|malheur"
        r"|crise|infarctus)\b",
        r"\blaiss\w* tomber\b",
        r"\bcarte (?:a|est) disparu",
    )
)
"""Clearly benign figures of speech, removed before the cues are searched."""

_THREAT_CUES = tuple(
    re.compile(p)
    for p in (
        r"\b(?:il|elle|ils|elles|on) (?:\w+ )?(?:va|vont|veut|veulent|voulait|menace de"
        r"|menacent de|a menace de|ont menace de|essaye de|essaie de|a essaye de) (?:me|la|le|les"
        r"|nous|vous) tuer\b",
        r"\b(?:la|le|les) (?:tuer|tue|tuera)\b",
    )
)
"""Someone threatening to kill the caller or another person: abuse, not self-harm."""

_DISTRESS_CUES = tuple(
    re.compile(p)
    for p in (
        r"\bsuicid",
        r"\bsu?icider\b",
        r"\b(?:me|se|te|nous|vous) (?:tuer|tue|tuera|tuerai|tuerais|tuait)\b",
        r"\b(?:me|se) (?:donner|donne|donnerai) la mort\b",
        r"\b(?:mettre|mis|mettrai|mettrait|met) fin a (?:mes|ses|ces|tes|leurs|nos) jours\b",
        r"\b(?:mettre|mis|met) fin a (?:ma|sa) vie\b",
        r"\ben (?:finir|finis|finit|terminer|termine)\b",
        r"\b(?:me|se) (?:foutre|fout|foutrai|mettre|met) en air\b",
        r"\b(?:me|se) (?:jeter|jette|jetterai|balancer|lancer) (?:par|sous|du|de|dans|a|sur)\b",
        r"\b(?:sauter|saute|sauterai) (?:par la fenetre|du pont|du balcon|sous un|du toit"
        r"|dans le vide)\b",
        r"\b(?:me|se) (?:pendre|pend|pendrai|noyer|noie|ouvrir les veines|taillader"
        r"|couper les veines|tirer une balle)\b",
        r"\bpendaison\b",
        r"\b(?:tous|toutes|toute|plein de|trop de) (?:mes|ses|les|des|la|de)?"
        r" ?(?:boite de )?" + _SELF_HARM_MEANS + r"\b",
        r"\bavale\w* (?:tous|toutes|toute|une boite|la boite|plein|trop)\b",
        r"\b(?:ai|suis|a) (?:deja )?(?:prepare|stocke|accumule|garde|mis de cote|cache)"
        r" (?:\w+ ){0,2}" + _SELF_HARM_MEANS + r"\b",
        r"\b(?:achete|prepare|trouve|accroche) (?:une|la) corde\b",
        r"\b" + _SELF_HARM_MEANS + r" pour (?:ne plus|plus|pas) me reveiller\b",
        r"\bplus (?:me|se) reveiller\b",
        r"\boverdose\b",
        r"\b(?:veux|voudrais|veut|voudrait|envie de|prefere|prefererais|prefererait"
        r"|aimerais|aimerait|vais|laissez moi|voulait|voulais|veulent|voudraient|souhaite"
        r"|souhaiterais) (?:\w+ )?mourir\b",
        r"\bmieux (?:mort|morte|sous terre|six pieds sous terre)\b",
        r"\b(?:plus|pas) (?:envie|gout|le gout|goût|la force|force|le courage|courage"
        r"|aucune envie|de raison|aucune raison|raison) (?:de |a )?(?:vivre|rien|tout"
        r"|continuer|me lever|exister|vie)\b",
        r"\b(?:plus|aucune|pas de) raisons? de (?:vivre|continuer|me lever|rester)\b",
        r"\bplus envie de rien\b",
        r"\bgout a rien\b",
        r"\ben peux plus de (?:vivre|la vie|cette vie|exister|tout)\b",
        r"\b(?:envie|besoin|veux|voudrais) (?:de )?disparaitre\b",
        r"\bdisparaitre (?:pour toujours|a jamais|de la terre)\b",
        r"\b(?:partir|parti) pour toujours\b",
        r"\b(?:faire|fasse|fassent|fera|ferai|ferait) (?:une|des|un) (?:betise|betises"
        r"|connerie|conneries|malheur)\b",
        r"\ba quoi bon\b",
        r"\b(?:plus|pas|aucune|sans) (?:d |de |aucune )?(?:issue|espoir|avenir)\b",
        r"\b(?:vois|voit) plus (?:le bout|interet|aucun interet|comment (?:continuer|m en))\b",
        r"\b(?:lettre|lettres|mot|message) (?:d )?adieu\b",
        r"\bdire adieu\b",
        r"\b(?:un|une) (?:poids|fardeau|charge) pour (?:tout le monde|tous|mes|ses|ma|sa"
        r"|mon|son|les autres|vous)\b",
        r"\bmieux sans moi\b",
        r"\b(?:idees|pensees) (?:noires|suicidaires|de mort)\b",
        r"\bveux plus vivre\b",
        r"\b(?:marre|assez) de (?:la vie|vivre|cette vie|tout)\b",
        r"\b(?:tentative|tente|essaye|essaie) de (?:se|me) (?:suicider|tuer|foutre)\b",
        r"\b(?:plus personne|personne) ne (?:me|la|le) (?:regrettera|manquera)\b",
        r"\bpersonne (?:n )?a (?:plus )?besoin de moi\b",
        r"\b(?:c )?est (?:fini|termine) pour moi\b",
        r"\b(?:servir|retourner|tourner) (?:\w+ )?contre (?:lui|elle|moi|soi)(?: meme)?\b",
        r"\bsu ?i ?cid",
        r"\bmet?t?re fin a (?:mes|ses|ma|sa) (?:jours|vie)\b",
        r"\b(?:envie de|veux|voudrais|vais) mour?rir\b",
        r"\ben terminer\b",
    )
)
"""What people in despair, or their relatives, say."""

_ABUSE_CUES = tuple(
    re.compile(p)
    for p in (
        r"\bmal ?trait",
        r"\bmaltraitance\b",
        r"\bviolen(?:ce|ces|t|te|ts|tes|tee|te)\b",
        r"\bbrutal",
        r"\bsevices?\b",
        r"\bfrapp(?:e|ee|es|ees|er|ent|ait|aient|ez|ais)\b",
        r"\b(?:la|le|les|lui|me|nous|leur) (?:tape|tapent|tapait|tapaient|taper)\b",
        r"\btape(?:nt)? dessus\b",
        r"\bcoups\b",
        r"\b(?:donne|donner|donnait|donnent|mis|met|mettre|recu|prend|prenait|porte)s? (?:un|des"
        r"|de) coups?\b",
        r"\bgifl",
        r"\b(?:des|une|la|les|lui|me|mettre|mis|donne|donner|recu|prend|prendre) claques?\b",
        r"\bfessee",
        r"\bbouscul",
        r"\bsecou(?:e|ee|er|ent|ait)\b",
        r"\b(?:pince|pincer|pincent|griffe|mord|tire les cheveux|crache dessus|crache sur)\b",
        r"\bbleus\b",
        r"\b(?:hematome|ecchymose|contusion|marques? de coups|traces? de coups|marques? sur"
        r"|traces? sur|brulure|cocard|oeil au beurre noir)",
        r"\b(?:crie|crient|criait|hurle|hurlent|hurlait|gueule|gueulent) (?:dessus|sur|apres)\b",
        r"\b(?:insult|humili|rabaiss|injuri|tyrannis|terroris|harcel|malmen|rudoi"
        r"|menace|menacer|menacent|menacait|intimid)",
        r"\b(?:la|le|les|lui|me|nous|leur) (?:fait|font|faisait) peur\b",
        r"\bpeur (?:de|du|des) (?:" + _POSSESSIVE + r" )?" + _PERSON + r"\b",
        r"\b(?:abus|abusee?s?|abuse de|abusent de|abusait de)\b",
        r"\babus de (?:faiblesse|confiance)\b",
        r"\bnegligen(?:ce|t|te|ts|tes)\b",
        r"\b(?:est|sont|etait|completement|totalement|tres) neglige(?:e|es|s)?\b",
        r"\b(?:vole|volent|volait|volaient|voler|vol|vols|piquent|pique|prend|prennent"
        r"|prenait|prenaient|prendre|pris|detourne|detournent|depense|depensent|utilise"
        r"|utilisent|soutire|soutirent|subtilise)\b(?: \w+){0,3} " + _MONEY + r"\b",
        r"\b(?:vole|volent|volait|voler|racket\w*|arnaqu\w*|escroqu\w*|spoli\w*|extorqu\w*|depouill\w*"
        r"|plum\w*) (?:" + _POSSESSIVE + r" )?" + _PERSON + r"\b",
        r"\b(?:me|lui|leur|nous|la|le|les) (?:vole|volent|volait|voler|racket\w*|arnaqu\w*"
        r"|escroqu\w*|plum\w*|depouill\w*)\b",
        r"\bracket",
        r"\bextorqu",
        r"\bescroqu",
        r"\bspoli",
        r"\b(?:vide|vident|vider|vidait|siphonn\w*) (?:son|sa|ses|le|leur|mon|ma|les) (?:compte"
        r"|comptes|livret|epargne|economies)\b",
        r"\b(?:fait|font|faisait|faire) signer (?:des|les|un|une)? ?(?:cheques?|papiers|procuration"
        r"|testament|chequiers?)\b",
        r"\bprofit\w* (?:de|d) (?:lui|elle|eux|son|sa|ses|leur|mon|ma|mes|argent|faiblesse"
        r"|la situation|sa situation)\b",
        r"\b(?:excrement|urine|pipi|caca|merde|selles|souille)",
        r"\bcouches? (?:sale|sales|pleine|pleines|mouillee|mouillees)\b",
        r"\b(?:ne|n) (?:la|le|les|lui|leur) (?:change|changent|lave|lavent|nourrit|nourrissent"
        r"|soigne|soignent|douche|douchent|leve|levent|donne|donnent)\w* (?:pas|jamais|plus"
        r"|rien|que)\b",
        r"\b(?:est|sont|etait|reste|restent) (?:pas|jamais|plus) (?:change|lave|nourri|soigne"
        r"|douche)(?:e|es|s)?\b",
        r"\b(?:change|changent|lave|lavent|nourrit|nourrissent|douche|douchent|soigne|soignent)"
        r" (?:pas|jamais|plus) (?:" + _POSSESSIVE + r" )?" + _PERSON + r"\b",
        r"\b(?:sans|rien a|pas a|pas de quoi) (?:manger|boire|nourriture|eau|soins)\b",
        r"\b(?:ne|n) (?:lui|leur) (?:donne|donnent|donnait) (?:pas|rien|plus|jamais)"
        r" (?:a manger|a boire|ses medicaments|de quoi)\b",
        r"\b(?:mange|mangent|mangeait|boit) (?:pas|plus|jamais) a (?:sa|leur) faim\b",
        r"\bprivee?s? (?:de|d) (?:nourriture|manger|repas|sorties|sortie|telephone|visites?"
        r"|soins|argent|chauffage|medicaments)\b",
        r"\b(?:affame|deshydrat|denutri|escarre)",
        r"\blaiss\w* (?:seule?s? )?(?:toute la journee |toute la nuit |des heures |par terre )?"
        r"(?:sans (?:manger|boire|soins|chauffage|rien)|dans (?:ses|son|sa|leur|les|la|le)"
        r" (?:excrements|urine|saletes?|salete|lit|couche|crasse|pipi|caca|chambre|vomi)"
        r"|par terre|a abandon)",
        r"\blaiss\w* mourir\b",
        r"\blaiss\w* seule?s? (?:toute la journee|toute la nuit|des jours|des heures|jour et nuit"
        r"|enferme)",
        r"\babandonne(?:e|es|s)? (?:par|a|dans|chez|toute)\b",
        r"\b(?:enferm|sequestr|cloitr|cadenass)",
        r"\b(?:attache|attachee|attaches|attachees|attachent|attachait|attacher) (?:au|a|sur"
        r"|dans|sur son|sur sa|la nuit|toute)\b",
        r"\bcontention\b",
        r"\battach\w* (?:" + _POSSESSIVE + r" )?" + _PERSON + r"\b",
        r"\battach\w* (?:au|a|sur) (?:son |sa |leur |un |une |le |la )?(?:lit|fauteuil|chaise)\b",
        r"\bpersonne ne (?:la|le|les|lui) (?:change|lave|nourrit|soigne|leve|douche)\b",
        r"\b(?:interdit|interdisent|empeche|empechent|empechait|laisse pas|laissent pas)"
        r" (?:de |d )?(?:sortir|voir|telephoner|parler|appeler|recevoir|manger)",
        r"\b(?:isole|isolent|coupe) (?:du monde|de (?:sa|la|ses) famille)\b",
        r"\b(?:drogue|drogu\w*|shoote\w*|assomm\w*|bourr\w*) (?:de|avec des|aux|a coup de)"
        r" (?:medicaments|cachets|calmants|somniferes|neuroleptiques)\b",
        r"\b(?:calmants|somniferes|cachets|medicaments)(?: \w+){0,3} pour (?:qu )?(?:elle|il|ils"
        r"|elles) (?:dorme|dorment|se taise|reste|soit|ne bouge|se calme)",
        r"\b(?:attouchement|abus sexuel|agression sexuelle|agresse|agression|viole(?:e|es|s)?\b)",
        r"\b(?:choses|trucs|faits|comportements|gestes) (?:pas normaux|pas normales|anormales?"
        r"|anormaux|bizarres|inquietants|inquietantes|graves|inadmissibles|choquants"
        r"|choquantes|inacceptables)\b",
        r"\bsignaler (?:une|des|un) (?:situation|cas|faits|personne)",
        r"\b(?:en danger|mise en danger|mis en danger)\b",
    )
)
"""What witnesses and victims say about the abuse or neglect of a vulnerable person."""


@dataclass(frozen=True, slots=True)
class SafetySignal:
    """A cue of distress or abuse found in an utterance."""

    intent: str
    """Critical intent to hand over to (:data:`DISTRESS` or :data:`ABUSE`)."""
    cue: str
    """The words that fired the cue, folded (for the event trail and tests; no names)."""


def prepare(text: str) -> str:
    """Fold an utterance for cue matching.

    Args:
        text: Utterance as written by a recogniser.

    Returns:
        Lowercase ASCII words separated by single spaces, elisions and hesitations removed,
        clearly benign figures of speech replaced by ``|`` (so no cue spans them).
    """
    words = [w for w in tokenize(strip_elisions(fold(text))) if w not in _DROPPED]
    folded = f" {' '.join(words)} "
    for pattern in _BENIGN:
        folded = pattern.sub(" | ", folded)
    return " ".join(folded.split())


def detect(text: str) -> SafetySignal | None:
    """Look for distress, then abuse, in an utterance.

    Args:
        text: Utterance as written by a recogniser.

    Returns:
        The first cue found (distress first), or ``None``.
    """
    folded = prepare(text)
    if not folded:
        return None
    for intent, cues in ((ABUSE, _THREAT_CUES), (DISTRESS, _DISTRESS_CUES), (ABUSE, _ABUSE_CUES)):
        for cue in cues:
            found = cue.search(folded)
            if found is not None:
                return SafetySignal(intent, found.group(0).strip())
    return None
