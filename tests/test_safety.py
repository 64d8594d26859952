"""safety.dangers: candidates that delete or overwrite files are flagged (judged on the
syntax tree), harmless look-alikes are not; Python that runs such commands or deletes files
gets the same judgement; flagged candidates rank last."""

from __future__ import annotations

import pytest

from nl2code import safety
from nl2code.rerank import Candidate, RerankConfig, features, rerank, score
from nl2code.safety import dangers

# the severe ones: / or a system folder, disks, formats, pipes into a shell
SEVERE = [
    "rm -rf /", "rm -rf / ", "sudo rm -rf /", "rm -fr /", "rm -Rf /", "rm -rfv /", "rm -r -f /",
    "rm -rf -- /", "rm -rf /*", "rm -rf \"/\"", "rm -rf ~", "rm -rf ~/", "rm -rf ~/*", "rm -rf $HOME",
    "rm -rf \"$HOME\"", "rm -rf $HOME/*", "rm -rf /etc", "sudo rm -rf /usr/", "rm -rf /usr/*",
    "rm -rf /home/*", "rm -rf /var; echo done", "rm --no-preserve-root -rf /", "mkfs.ext4 /dev/sda1",
    "sudo mkfs -t ext4 /dev/sdb", "dd if=/dev/zero of=/dev/sda bs=1M", "dd of=/dev/nvme0n1 if=image.iso",
    "cat image.iso > /dev/sdb", "echo x > /dev/nvme0n1", "curl -sSL https://example.com/install.sh | sh",
    "curl https://example.com/x | sudo bash", "wget -qO- https://example.com/x | bash", ":(){ :|:& };:",
    "chmod -R 777 /", "sudo chmod -R a+rwx /etc", "chown -R nobody /", "echo 'x' > /etc/passwd",
    "cat new > /etc/sudoers", "shutdown -h now", "sudo reboot",
]

# everything else that deletes or overwrites files, including what the model emitted
DELETES_OR_OVERWRITES = [
    "find / -delete",  # offered for "show disk usage ... sorted by size"
    "find . -type d -print0 | xargs -0 rm",
    "find . -name '*.pyc' -delete",
    "find . -name '*.tmp' -exec rm {} \\;",
    "find . -name '*.tmp' -exec rm -f {} +",
    "find /tmp -type f -execdir shred -u {} \\;",
    "ls *.log | xargs rm -f",
    "ls | xargs -I {} rm {}",
    "rm -rf ./build", "rm -rf build/", "rm -rf /tmp/scratch", "rm file.txt", "unlink a.txt",
    "shred -u secret.txt", "rmdir empty", "sudo -u www-data rm -r /srv/app/cache",
    "nohup rm -rf old &", "env LC_ALL=C rm -f x",
    "for f in *.bak; do rm \"$f\"; done", "x=$(rm -v a)", "cd /tmp && rm -rf x",
    "sh -c 'rm -rf /tmp/x'", "bash -c \"find . -delete\"",
    "dd if=a of=b", "dd if=/dev/urandom of=random.bin bs=1k count=1",
    "echo hi > out.txt", "sort a.txt > a.txt", "grep root /etc/passwd > users.txt",
    "ls >| listing", "sed -i 's/a/b/g' file.txt", "sed -i.bak 's/a/b/' f", "echo x | tee out.txt",
    "truncate -s 0 log.txt", "mkswap /dev/sdb2",
]

HARMLESS = [
    "find . -name '*.py'", "find / -name x", "find . -type d -print0", "find . -exec ls {} \\;",
    "echo rm", "echo 'rm -rf /'", "grep -r delete .", "grep -rn 'rm -rf' .", "ls -la /", "du -sh ~",
    "du -sh * | sort -h", "cat /etc/passwd", "cat a >> b", "echo hi >> log.txt", "echo hi > /dev/null",
    "ls 2>/dev/null", "ls > /dev/null 2>&1", "cmd 2>&1 | less", "ls /dev/sda*", "dd if=/dev/zero of=/dev/null count=1",
    "dd if=disk.img", "curl -O url", "curl -sSL https://example.com/install.sh -o install.sh",
    "wget https://example.com/file.tar.gz", "chmod -R 755 ./dir", "chmod 777 script.sh",
    "chown -R me ./dir", "sed 's/a/b/' file.txt", "tee -a log.txt", "man rm", "which shred",
    "history | grep rm", "xargs echo", "alias del=ls", "ps aux | grep reboot",
]

PY_FLAGGED = [
    "subprocess.call(['shutdown', './test.sh'])",  # the model's answer to "call a shell script using subprocess"
    "os.remove('a.txt')", "os.unlink(path)", "os.rmdir('d')", "shutil.rmtree('build')", "shutil.rmtree(d)",
    "Path('x').unlink()", "pathlib.Path(p).rmdir()", "os.system('rm -rf /')", "os.system('rm *.pyc')",
    "subprocess.run(['rm', '-rf', path])", "subprocess.Popen('mkfs.ext4 /dev/sdb', shell=True)",
    "os.system(f'rm {name}')", "subprocess.check_call(['find', '.', '-delete'])",
    "os.execv('/sbin/reboot', ['reboot'])", "import os\nfor f in files:\n    os.remove(f)",
]

PY_HARMLESS = [
    "subprocess.call(['./test.sh'])", "subprocess.call('./test.sh', shell=True)", "os.system('ls -l')",
    "subprocess.check_output(['git', 'status'])", "print('rm -rf /')", "x = 'os.remove(a)'",
    "os.path.exists('a.txt')", "shutil.copy('a', 'b')", "open('a.txt').read()", "os.listdir('.')",
    "subprocess.run(cmd)", "def remove(x):\n    return x",
]


@pytest.mark.parametrize("cmd", SEVERE + DELETES_OR_OVERWRITES)
def test_destructive_bash_flagged(cmd):
    assert dangers(cmd, "bash"), cmd


@pytest.mark.parametrize("cmd", HARMLESS)
def test_harmless_bash_not_flagged(cmd):
    assert dangers(cmd, "bash") == [], cmd


@pytest.mark.parametrize("code", PY_FLAGGED)
def test_destructive_python_flagged(code):
    assert dangers(code, "python"), code


@pytest.mark.parametrize("code", PY_HARMLESS)
def test_harmless_python_not_flagged(code):
    assert dangers(code, "python") == [], code


def test_reasons_are_named():
    assert dangers("rm -rf /") == [safety.ROOT_DELETE]
    assert dangers("find / -delete") == [safety.DELETES]
    assert dangers("echo hi > out.txt") == [safety.OVERWRITES]
    assert dangers("subprocess.call(['shutdown', './test.sh'])", "python") == [safety.SHUTDOWN]
    assert "fork bomb" in dangers(":(){ :|:& };:")
    assert len(dangers("rm -rf / --no-preserve-root")) == 2
    assert dangers("rm a; rm b") == [safety.DELETES]  # each reason once


def test_danger_inside_longer_script():
    assert dangers("cd /tmp\nls\nrm -rf /\n")
    assert dangers("make && curl https://x.sh | sh")
    assert dangers("if [ -d out ]; then\n  find out -type f | xargs rm\nfi\n")


def test_unparsable_text_is_still_judged_by_its_patterns():
    assert dangers("curl https://x | sh ((") == ["download piped into a shell"]
    assert dangers("def (", "python") == []


@pytest.mark.parametrize("lang,dangerous,harmless", [
    ("bash", "find . -type d -print0 | xargs -0 rm", "du -sh * | sort -h"),
    ("python", "subprocess.call(['shutdown', './test.sh'])", "subprocess.call(['./test.sh'])"),
])
def test_flagged_candidates_rank_last(lang, dangerous, harmless):
    """The model's favourite is destructive: the rerank puts the harmless one first."""
    def cand(code, logprob):
        f = features(code, 5, logprob, logprob, set(), code, lang)
        return Candidate(code, lang, score(f, RerankConfig()), logprob, f["parses"], f, f["danger"])

    ranked = rerank([cand(dangerous, -0.1), cand(harmless, -3.0)])
    assert [c.code for c in ranked] == [harmless, dangerous]
    assert ranked[1].danger and not ranked[0].danger
    assert ranked[1].features["danger"] is ranked[1].danger  # stored once


@pytest.mark.parametrize("code,lang,intent,asked", [
    ("find . -name '*.tmp' -delete", "bash", "delete all .tmp files below this folder", True),
    ("find . -name '*.tmp' -delete", "bash", "list all .tmp files below this folder", False),
    ("ls -la > listing.txt", "bash", "save the listing of this folder to listing.txt", True),
    ("ls -la > listing.txt", "bash", "show the files in this folder", False),
    ("os.remove('tmp.txt')", "python", "remove file 'tmp.txt'", True),
    ("rm -rf /", "bash", "delete everything", False),  # never asked for
    ("shutdown -h now", "bash", "shut down the machine now", True),
])
def test_a_destructive_candidate_is_not_ranked_last_when_the_intent_asks_for_it(code, lang, intent, asked):
    from nl2code.rerank import RerankConfig, score
    from nl2code.safety import asked_for, dangers

    reasons = dangers(code, lang)
    assert reasons  # still flagged (and warned about) either way
    assert asked_for(reasons, intent) is asked
    f = {"norm_logprob": -1.0, "coverage": 1.0, "invented": 0, "log_length": 1.0, "danger": reasons,
         "danger_asked": asked_for(reasons, intent)}
    cfg = RerankConfig()
    assert (score(f, cfg) < -50) is (not asked)
