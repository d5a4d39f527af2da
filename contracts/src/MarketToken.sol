// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title MarketToken: the local test stand-in for the stablecoin a production deployment uses
/// @notice 6 decimals like USDC; only the owner (the deployer) mints, to fund demo and test accounts.
contract MarketToken is ERC20, Ownable {
    constructor(address owner_) ERC20("Marketplace Test Dollar", "mUSD") Ownable(owner_) {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
