#!/usr/bin/env bash
# PASCAL VOC2012 trainval: download (resumable), verify MD5, extract to ROOT/VOCdevkit/VOC2012.
# Run with --help for the options; `rssd download voc2012` is the Python equivalent.
set -euo pipefail
VOC_NAME="VOC2012"
VOC_YEAR_DIR="VOC2012"
VOC_URL_DIR="http://host.robots.ox.ac.uk/pascal/VOC/voc2012"
VOC_FILES=("VOCtrainval_11-May-2012.tar")
VOC_MD5S=("6cd6e144f989b92b3379bac3b3de84fd")
# shellcheck source=_voc_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_voc_common.sh"
voc_main "$@"
