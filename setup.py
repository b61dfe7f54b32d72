"""Package metadata comes from settings.ini (nbdev 2). No pkg_resources import: it is gone in setuptools 81+."""
from configparser import ConfigParser
from pathlib import Path

import setuptools

cfg = ConfigParser(delimiters=['='])
cfg.read(Path(__file__).parent / 'settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
lic = licenses[cfg['license']]
statuses = ['Planning', 'Pre-Alpha', 'Alpha', 'Beta', 'Production/Stable', 'Mature', 'Inactive']
min_python = cfg['min_python']
py_versions = ['3.10', '3.11', '3.12']

requirements = cfg.get('requirements', '').split()
lab_requirements = cfg.get('lab_requirements', '').split()
wandb_requirements = cfg.get('wandb_requirements', '').split()
dev_requirements = cfg.get('dev_requirements', '').split() + lab_requirements + wandb_requirements
console_scripts = cfg.get('console_scripts', '').split()

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=(Path(__file__).parent / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license=lic[0],
    author=cfg['author'],
    author_email=cfg['author_email'],
    url=cfg['git_url'],
    keywords=cfg['keywords'].split(),
    classifiers=[
        'Development Status :: ' + cfg['status'] + ' - ' + statuses[int(cfg['status'])],
        'Intended Audience :: ' + cfg['audience'].title(),
        'License :: ' + lic[1],
        'Natural Language :: ' + cfg['language'].title(),
    ] + ['Programming Language :: Python :: ' + v for v in py_versions if v >= min_python],
    packages=setuptools.find_packages(include=['fisao', 'fisao.*']),
    # fisao/assets: the CHAIR synonym lists, the paper presets, the accelerate configs and the paper scripts (`fisao
    # preset` lists them); MANIFEST.in puts them, settings.ini and LICENSE into the sdist.
    package_data={'fisao': ['assets/*.txt', 'assets/configs/*.yaml', 'assets/configs/accelerate/*.yaml'],
                  'fisao.assets.scripts': ['*.sh', '*.py']},
    include_package_data=True,
    license_files=['LICENSE'],
    install_requires=requirements,
    extras_require={'lab': lab_requirements, 'wandb': wandb_requirements, 'dev': dev_requirements},
    python_requires='>=' + min_python,
    zip_safe=False,
    entry_points={
        'console_scripts': console_scripts,
        'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"],
    },
)
