"""agentloop-gem: the text games of GEM (``gem-llm``, the General Experience Maker) as agentloop environments.

Registers ``gem/<Game>-<level>-v0`` for GEM's ``game:<Game>-v0-<level>`` (e.g. ``gem/GuessTheNumber-easy-v0``)
through the ``agentloop.environments`` entry point, without importing gem (it loads on the first make).

Included: the games that run offline: GuessTheNumber, Mastermind, Minesweeper, FifteenPuzzle,
Sudoku, TowerofHanoi. Left out: Wordle, Hangman and WordSearch (they download the NLTK word list at
construction), FifteenPuzzle-random (fails to construct in gem-llm 0.1.0), and GEM's non-game
datasets (math, code, QA: they download their data from the Hugging Face hub; agentloop has its
own environments for those).
"""

from __future__ import annotations

from collections.abc import Callable

GAMES: dict[str, str] = {  # agentloop id -> GEM id
    f"gem/{game}-{level}-v0": f"game:{game}-v0-{level}"
    for game, levels in (("GuessTheNumber", ("easy", "hard", "random")), ("Mastermind", ("easy", "hard", "random")),
                         ("Minesweeper", ("easy", "hard", "random")), ("FifteenPuzzle", ("easy", "hard")),
                         ("Sudoku", ("easy", "hard", "random")), ("TowerofHanoi", ("easy", "hard", "random")))
    for level in levels
}


def register(register: Callable[..., object]) -> None:
    for env_id, gem_id in GAMES.items():
        register(env_id, entry_point="agentloop_gem.env:GemGameEnv", kwargs={"game": gem_id},
                 description=f"GEM game {gem_id}: multi-turn, the game's replies are the feedback.")
